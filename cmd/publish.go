package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// publishOptions are the flags of `jsctl publish`.
type publishOptions struct {
	clientOptions
	headers        []string
	idempotencyKey string
}

func (o *publishOptions) AddFlags(fs *pflag.FlagSet) {
	o.clientOptions.AddFlags(fs)
	fs.StringArrayVarP(&o.headers, "header", "H", nil, "header name=value (repeatable)")
	fs.StringVarP(&o.idempotencyKey, "idempotency-key", "k", "", "retries with the same key return the original event")
}

func newPublishCommand() *cobra.Command {
	o := &publishOptions{}
	c := &cobra.Command{
		Use:   "publish <event-type> <payload|@file|->",
		Short: "Publish an event and print its correlation ID",
		Long: `Publish an event through a running jsctl and wait for the ack.

The payload is the argument itself, @path to read a file, or - to read stdin.`,
		Example: `  jsctl publish order.created '{"id":42}'
  jsctl publish order.created @order.json -H source=shop -k order-42
  echo '{"id":42}' | jsctl publish order.created - -o json`,
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			payload, err := readPayload(args[1], c.InOrStdin())
			if err != nil {
				return err
			}
			req := &pb.NewEventRequest{EventType: args[0], Payload: payload, IdempotencyKey: o.idempotencyKey}
			if len(o.headers) > 0 {
				req.Headers = map[string]string{}
				for _, h := range o.headers {
					k, v, ok := strings.Cut(h, "=")
					if !ok {
						return fmt.Errorf("--header %q: want name=value", h)
					}
					req.Headers[k] = v
				}
			}
			return o.call(c, func(ctx context.Context, cc *grpc.ClientConn) error {
				resp, err := pb.NewControllerClient(cc).NewEvent(ctx, req)
				if err != nil {
					return err
				}
				if o.output == "json" {
					return printJSON(c.OutOrStdout(), resp)
				}
				e := resp.GetEvent()
				_, err = fmt.Fprintf(c.OutOrStdout(), "%s\tack=%t status=%s seq=%d type=%s\n",
					e.GetCorrelationId(), resp.GetAck(), statusName(e.GetStatus()), e.GetStreamSequence(), e.GetEventType())
				return err
			})
		},
	}
	o.AddFlags(c.Flags())
	return c
}

// readPayload interprets the payload argument: "-" is stdin, "@path" a file,
// anything else the payload itself.
func readPayload(arg string, stdin io.Reader) ([]byte, error) {
	switch {
	case arg == "-":
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read payload from stdin: %w", err)
		}
		return b, nil
	case strings.HasPrefix(arg, "@"):
		b, err := os.ReadFile(arg[1:])
		if err != nil {
			return nil, fmt.Errorf("read payload: %w", err)
		}
		return b, nil
	}
	return []byte(arg), nil
}
