package cmd

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func newHealthCommand() *cobra.Command {
	o := &clientOptions{timeout: 3 * time.Second}
	c := &cobra.Command{
		Use:   "health",
		Short: "Check a running jsctl; exit 0 when it is SERVING",
		Long: `Ask a running jsctl for its gRPC health (grpc.health.v1, service
controller.v1.Controller). Prints the status; exits 0 when SERVING and 1
otherwise, so it can serve as a container health check.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return o.call(c, func(ctx context.Context, cc *grpc.ClientConn) error {
				resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "controller.v1.Controller"})
				if err != nil {
					return err
				}
				if o.output == "json" {
					if err := printJSON(c.OutOrStdout(), resp); err != nil {
						return err
					}
				} else {
					fmt.Fprintln(c.OutOrStdout(), resp.GetStatus())
				}
				if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					return &ExitError{Code: 1, Err: fmt.Errorf("%s is %s", o.addr, resp.GetStatus())}
				}
				return nil
			})
		},
	}
	o.AddFlags(c.Flags())
	return c
}
