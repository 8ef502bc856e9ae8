// Package cmd is jsctl's command line and the place where everything is wired:
// the cobra commands (one file each), Config (defaults, file, environment,
// flags, validation) and App, which starts the ledger, the embedded NATS
// server, the pipeline and the gRPC API in order and stops them in reverse.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"
)

// NewRootCommand returns the jsctl command with every subcommand.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "jsctl",
		Short: "A NATS JetStream controller with durable acks and event status, in one binary",
		Long: `jsctl boots an in-process NATS JetStream server, serves a gRPC API on it and
records every event and its status in a local bbolt ledger.

  jsctl serve                           run the appliance (./data, gRPC on 127.0.0.1:50051)
  jsctl publish order.created '{"id":1}' publish an event
  jsctl status <correlation-id>         show an event's status
  jsctl subscribe billing --filter 'order.>' --exec ./handle.sh   consume events`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newServeCommand(),
		newPublishCommand(),
		newStatusCommand(),
		newHealthCommand(),
		newSubscribeCommand(),
		newRedriveCommand(),
		newEventsCommand(),
		newBenchCommand(),
		newDoctorCommand(),
		newTokenCommand(),
		newVersionCommand(),
	)
	return root
}

// ExitError carries a specific exit code out of a command.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Main runs jsctl with args and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return mainWith(ctx, NewRootCommand(), args, stdout, stderr)
}

func mainWith(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "jsctl:", describe(err))
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}

// describe renders gRPC errors as "Code: message".
func describe(err error) string {
	if s, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s: %s", s.Code(), s.Message())
	}
	return err.Error()
}
