package cmd

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

func newEventsCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "events",
		Short: "Work with stored events",
	}
	c.AddCommand(newEventsListCommand())
	return c
}

// eventsListOptions are the flags of `jsctl events ls`.
type eventsListOptions struct {
	clientOptions
	status     string
	typePrefix string
	since      string
	until      string
	limit      uint32
	pageToken  string
	all        bool
}

func (o *eventsListOptions) AddFlags(fs *pflag.FlagSet) {
	o.clientOptions.AddFlags(fs)
	fs.StringVar(&o.status, "status", "", "accepted, published, delivered, processed or failed")
	fs.StringVar(&o.typePrefix, "type", "", "event types starting with this, e.g. order.")
	fs.StringVar(&o.since, "since", "", "created at or after: a duration ago (1h) or an RFC 3339 time")
	fs.StringVar(&o.until, "until", "", "created at or before: a duration ago (10m) or an RFC 3339 time")
	fs.Uint32Var(&o.limit, "limit", 100, "events per page (at most 1000)")
	fs.StringVar(&o.pageToken, "page-token", "", "continue from a previous page")
	fs.BoolVar(&o.all, "all", false, "fetch every page")
}

func newEventsListCommand() *cobra.Command {
	o := &eventsListOptions{}
	c := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List events, oldest first, with filters",
		Example: `  jsctl events ls --status failed
  jsctl events ls --type order. --since 1h -o json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			req, err := o.request(time.Now())
			if err != nil {
				return err
			}
			return o.call(c, func(ctx context.Context, cc *grpc.ClientConn) error {
				client := pb.NewControllerClient(cc)
				w := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
				if o.output == "text" {
					fmt.Fprintln(w, "CORRELATION ID\tTYPE\tSTATUS\tSEQ\tCREATED")
				}
				for {
					resp, err := client.ListEvents(ctx, req)
					if err != nil {
						return err
					}
					if o.output == "json" {
						if err := printJSON(c.OutOrStdout(), resp); err != nil {
							return err
						}
					} else {
						for _, e := range resp.GetEvents() {
							fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", e.GetCorrelationId(), e.GetEventType(), statusName(e.GetStatus()),
								e.GetStreamSequence(), e.GetCreatedAt().AsTime().Format(time.RFC3339))
						}
					}
					if !o.all || resp.GetNextPageToken() == "" {
						if o.output == "text" && resp.GetNextPageToken() != "" {
							w.Flush()
							fmt.Fprintf(c.ErrOrStderr(), "more: --page-token %s (or --all)\n", resp.GetNextPageToken())
						}
						return w.Flush()
					}
					req.PageToken = resp.GetNextPageToken()
				}
			})
		},
	}
	o.AddFlags(c.Flags())
	return c
}

func (o *eventsListOptions) request(now time.Time) (*pb.ListEventsRequest, error) {
	req := &pb.ListEventsRequest{EventTypePrefix: o.typePrefix, PageSize: o.limit, PageToken: o.pageToken}
	if o.status != "" {
		v, ok := pb.Status_value["STATUS_"+strings.ToUpper(o.status)]
		if !ok || v == 0 {
			return nil, fmt.Errorf("--status %q: want accepted, published, delivered, processed or failed", o.status)
		}
		req.Status = pb.Status(v)
	}
	for _, b := range []struct {
		flag, value string
		dst         **timestamppb.Timestamp
	}{{"since", o.since, &req.Since}, {"until", o.until, &req.Until}} {
		if b.value == "" {
			continue
		}
		t, err := parseWhen(b.value, now)
		if err != nil {
			return nil, fmt.Errorf("--%s %q: %w", b.flag, b.value, err)
		}
		*b.dst = timestamppb.New(t)
	}
	return req, nil
}

// parseWhen reads "90m" as 90 minutes before now, or an RFC 3339 time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want a duration like 1h or a time like 2026-12-04T10:00:00Z")
	}
	return t, nil
}
