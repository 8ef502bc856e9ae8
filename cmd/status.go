package cmd

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// statusOptions are the flags of `jsctl status`.
type statusOptions struct {
	clientOptions
	payload bool
	wait    bool
}

func (o *statusOptions) AddFlags(fs *pflag.FlagSet) {
	o.clientOptions.AddFlags(fs)
	fs.BoolVar(&o.payload, "payload", false, "also print the payload")
	fs.BoolVarP(&o.wait, "wait", "w", false, "wait for PROCESSED (exit 0) or FAILED (exit 1); exit 2 on --timeout (default 30s with --wait)")
}

func newStatusCommand() *cobra.Command {
	o := &statusOptions{}
	c := &cobra.Command{
		Use:   "status <correlation-id>",
		Short: "Show an event's status and history",
		Long: `Ask a running jsctl for an event's status over gRPC. It never opens the
ledger file, so it works while the server runs.`,
		Example: `  jsctl status 0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b
  jsctl status 0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b -o json | jq -r .status
  jsctl status 0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b --wait --timeout 1m && echo done`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if o.wait {
				if !c.Flags().Changed("timeout") {
					o.timeout = 30 * time.Second
				}
				return o.call(c, func(ctx context.Context, cc *grpc.ClientConn) error {
					return o.waitFor(ctx, c, pb.NewControllerClient(cc), args[0])
				})
			}
			return o.call(c, func(ctx context.Context, cc *grpc.ClientConn) error {
				resp, err := pb.NewControllerClient(cc).EventStatus(ctx, &pb.EventStatusRequest{CorrelationId: args[0], IncludePayload: o.payload})
				if err != nil {
					return err
				}
				return o.print(c, resp)
			})
		},
	}
	o.AddFlags(c.Flags())
	return c
}

// Exit codes of `jsctl status --wait` (PROCESSED exits 0).
const (
	exitFailed  = 1
	exitTimeout = 2
)

// waitFor follows the event with WatchEvent until PROCESSED, FAILED or the
// deadline, prints the last status, and returns the matching exit code.
func (o *statusOptions) waitFor(ctx context.Context, c *cobra.Command, client pb.ControllerClient, id string) error {
	watch, err := client.WatchEvent(ctx, &pb.EventStatusRequest{CorrelationId: id, IncludePayload: o.payload})
	if err != nil {
		return err
	}
	var last *pb.EventStatusResponse
	for {
		resp, err := watch.Recv()
		if err != nil {
			if status.Code(err) == codes.DeadlineExceeded || ctx.Err() != nil {
				if last != nil {
					o.print(c, last)
				}
				return &ExitError{Code: exitTimeout, Err: fmt.Errorf("timed out after %s; last status %s", o.timeout, statusName(last.GetStatus()))}
			}
			return err
		}
		last = resp
		switch resp.GetStatus() {
		case pb.Status_STATUS_PROCESSED:
			return o.print(c, resp)
		case pb.Status_STATUS_FAILED:
			if err := o.print(c, resp); err != nil {
				return err
			}
			return &ExitError{Code: exitFailed, Err: fmt.Errorf("event %s FAILED", id)}
		}
		fmt.Fprintf(c.ErrOrStderr(), "%s  %s\n", time.Now().Format(time.TimeOnly), statusName(resp.GetStatus()))
	}
}

func (o *statusOptions) print(c *cobra.Command, r *pb.EventStatusResponse) error {
	if o.output == "json" {
		return printJSON(c.OutOrStdout(), r)
	}
	return printStatus(c.OutOrStdout(), r, o.payload)
}

// statusName is "PUBLISHED" for STATUS_PUBLISHED.
func statusName(s pb.Status) string { return strings.TrimPrefix(s.String(), "STATUS_") }

func printStatus(out io.Writer, r *pb.EventStatusResponse, withPayload bool) error {
	e := r.GetEvent()
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "Correlation ID:\t%s\n", e.GetCorrelationId())
	fmt.Fprintf(w, "Event type:\t%s\n", e.GetEventType())
	fmt.Fprintf(w, "Status:\t%s\n", statusName(r.GetStatus()))
	if seq := e.GetStreamSequence(); seq > 0 {
		fmt.Fprintf(w, "Stream sequence:\t%d\n", seq)
	}
	fmt.Fprintf(w, "Created:\t%s\n", e.GetCreatedAt().AsTime().Format(time.RFC3339Nano))
	for k, v := range e.GetHeaders() {
		fmt.Fprintf(w, "Header:\t%s=%s\n", k, v)
	}
	if withPayload {
		fmt.Fprintf(w, "Payload:\t%q\n", e.GetPayload())
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(r.GetGroups()) > 0 {
		fmt.Fprintln(out, "\nGroups:")
		w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "  GROUP\tSTATUS\tDELIVERIES\tLAST REASON")
		for _, g := range r.GetGroups() {
			line := fmt.Sprintf("  %s\t%s\t%d", g.GetGroup(), statusName(g.GetStatus()), g.GetDeliveryCount())
			if g.GetLastReason() != "" {
				line += "\t" + g.GetLastReason()
			}
			fmt.Fprintln(w, line)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, "\nHistory:")
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, t := range r.GetHistory() {
		change := statusName(t.GetTo())
		if t.GetFrom() != pb.Status_STATUS_UNSPECIFIED {
			change = statusName(t.GetFrom()) + " -> " + change
		}
		var detail []string
		if t.GetGroup() != "" {
			detail = append(detail, "group="+t.GetGroup())
		}
		if t.GetStreamSequence() > 0 {
			detail = append(detail, fmt.Sprintf("seq=%d", t.GetStreamSequence()))
		}
		if t.GetDeliveryCount() > 0 {
			detail = append(detail, fmt.Sprintf("deliveries=%d", t.GetDeliveryCount()))
		}
		if t.GetReason() != "" {
			detail = append(detail, "reason="+t.GetReason())
		}
		line := "  " + t.GetTime().AsTime().Format(time.RFC3339Nano) + "\t" + change
		if len(detail) > 0 {
			line += "\t" + strings.Join(detail, " ")
		}
		fmt.Fprintln(w, line)
	}
	return w.Flush()
}
