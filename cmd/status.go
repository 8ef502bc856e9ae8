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

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// statusOptions are the flags of `jsctl status`.
type statusOptions struct {
	clientOptions
	payload bool
}

func (o *statusOptions) AddFlags(fs *pflag.FlagSet) {
	o.clientOptions.AddFlags(fs)
	fs.BoolVar(&o.payload, "payload", false, "also print the payload")
}

func newStatusCommand() *cobra.Command {
	o := &statusOptions{}
	c := &cobra.Command{
		Use:   "status <correlation-id>",
		Short: "Show an event's status and history",
		Long: `Ask a running jsctl for an event's status over gRPC. It never opens the
ledger file, so it works while the server runs.`,
		Example: `  jsctl status 0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b
  jsctl status 0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b -o json | jq -r .status`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return o.call(c, func(ctx context.Context, cc *grpc.ClientConn) error {
				resp, err := pb.NewControllerClient(cc).EventStatus(ctx, &pb.EventStatusRequest{CorrelationId: args[0], IncludePayload: o.payload})
				if err != nil {
					return err
				}
				if o.output == "json" {
					return printJSON(c.OutOrStdout(), resp)
				}
				return printStatus(c.OutOrStdout(), resp, o.payload)
			})
		},
	}
	o.AddFlags(c.Flags())
	return c
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
			fmt.Fprintf(w, "  %s\t%s\t%d\t%s\n", g.GetGroup(), statusName(g.GetStatus()), g.GetDeliveryCount(), g.GetLastReason())
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
