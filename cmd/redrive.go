package cmd

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// redriveOptions are the flags of `jsctl redrive`.
type redriveOptions struct {
	clientOptions
	group string
}

func (o *redriveOptions) AddFlags(fs *pflag.FlagSet) {
	o.clientOptions.AddFlags(fs)
	fs.StringVarP(&o.group, "group", "g", "", "the group to redrive to (needed when the event failed in several)")
}

func newRedriveCommand() *cobra.Command {
	o := &redriveOptions{}
	c := &cobra.Command{
		Use:   "redrive <correlation-id>",
		Short: "Send a FAILED event again to the group it failed in",
		Long: `Send a failed event again to the consumer group it failed in, and only to it,
with a fresh delivery count. Find failed events with: jsctl events ls --status failed`,
		Example: `  jsctl redrive 0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b
  jsctl redrive 0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b --group billing`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return o.call(c, func(ctx context.Context, cc *grpc.ClientConn) error {
				resp, err := pb.NewControllerClient(cc).Redrive(ctx, &pb.RedriveRequest{CorrelationId: args[0], Group: o.group})
				if err != nil {
					return err
				}
				if o.output == "json" {
					return printJSON(c.OutOrStdout(), resp)
				}
				fmt.Fprintf(c.OutOrStdout(), "redriven as stream sequence %d\n\n", resp.GetStreamSequence())
				return printStatus(c.OutOrStdout(), resp.GetStatus(), false)
			})
		},
	}
	o.AddFlags(c.Flags())
	return c
}
