package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// ExitTerminate is the exit code with which an --exec command says the event
// can never be processed: jsctl terminates it (FAILED) instead of naking it.
const ExitTerminate = 99

// subscribeOptions are the flags of `jsctl subscribe`.
type subscribeOptions struct {
	clientOptions
	filters     []string
	maxInFlight uint32
	exec        string
	concurrency int
}

func (o *subscribeOptions) AddFlags(fs *pflag.FlagSet) {
	o.clientOptions.AddFlags(fs)
	fs.StringArrayVarP(&o.filters, "filter", "f", nil, "event types to receive, with * and > wildcards (repeatable; default all)")
	fs.Uint32Var(&o.maxInFlight, "max-in-flight", 16, "unsettled deliveries at once")
	fs.StringVar(&o.exec, "exec", "", "run this shell command per event; exit 0 acks, 99 terminates, other codes nak")
	fs.IntVar(&o.concurrency, "concurrency", 1, "commands running at once with --exec")
}

func newSubscribeCommand() *cobra.Command {
	o := &subscribeOptions{}
	c := &cobra.Command{
		Use:   "subscribe <group>",
		Short: "Receive a consumer group's events and ack them, or run a command per event",
		Long: `Receive the events of a consumer group (created on first use with the
filters given) until Ctrl-C.

Without --exec, every delivery is printed (one JSON object per line with
-o json) and acked. With --exec, the command runs through /bin/sh once per
event with the payload on stdin and these variables set:

  JSCTL_CORRELATION_ID  JSCTL_EVENT_TYPE  JSCTL_GROUP
  JSCTL_STREAM_SEQUENCE JSCTL_DELIVERY_COUNT  JSCTL_HEADER_<NAME>

Exit 0 acks the event (PROCESSED), exit 99 terminates it (FAILED, with the
command's last stderr line as the reason), any other exit naks it: it is
delivered again after the group's backoff until its max deliveries.`,
		Example: `  jsctl subscribe billing --filter 'order.>'
  jsctl subscribe billing --filter 'order.>' -o json | jq .eventType
  jsctl subscribe mailer --exec './send-mail.sh' --concurrency 4`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if o.concurrency < 1 {
				return fmt.Errorf("--concurrency must be at least 1")
			}
			ctx, stop := signal.NotifyContext(runContext(c), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// A subscription runs until interrupted: no call deadline.
			o.timeout = 0
			c.SetContext(ctx)
			err := o.call(c, func(ctx context.Context, cc *grpc.ClientConn) error {
				return o.run(ctx, c, pb.NewControllerClient(cc), args[0])
			})
			if ctx.Err() != nil {
				return nil // Ctrl-C (or the caller's cancel): a clean stop
			}
			return err
		},
	}
	o.AddFlags(c.Flags())
	return c
}

// run opens the subscription and handles deliveries until ctx ends.
func (o *subscribeOptions) run(ctx context.Context, c *cobra.Command, client pb.ControllerClient, group string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Subscribe(ctx)
	if err != nil {
		return err
	}
	open := &pb.SubscribeOpen{Group: group, Filters: o.filters, MaxInFlight: o.maxInFlight}
	if err := stream.Send(&pb.SubscribeRequest{Request: &pb.SubscribeRequest_Open{Open: open}}); err != nil {
		return err
	}
	var sendMu, outMu sync.Mutex
	settle := func(st *pb.Settle) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(&pb.SubscribeRequest{Request: &pb.SubscribeRequest_Settle{Settle: st}})
	}
	work := make(chan *pb.Delivery)
	var wg sync.WaitGroup
	errs := make(chan error, o.concurrency)
	for range o.concurrency {
		wg.Go(func() {
			for d := range work {
				st := o.handle(ctx, c, d, &outMu)
				if err := settle(st); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		})
	}
	defer func() {
		close(work)
		wg.Wait()
	}()
	for {
		d, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return errors.New("server ended the subscription")
			}
			return err
		}
		if r := d.GetSettled(); r != nil {
			if codes.Code(r.GetCode()) != codes.OK {
				fmt.Fprintf(c.ErrOrStderr(), "jsctl: settle %s %s: %s: %s\n", r.GetDeliveryId(), settleName(r.GetAction()), codes.Code(r.GetCode()), r.GetMessage())
			}
			continue
		}
		select {
		case work <- d:
		case err := <-errs:
			return err
		case <-ctx.Done():
			return nil
		}
	}
}

// handle prints or runs one delivery and says how to settle it.
func (o *subscribeOptions) handle(ctx context.Context, c *cobra.Command, d *pb.Delivery, outMu *sync.Mutex) *pb.Settle {
	ack := &pb.Settle{DeliveryId: d.GetDeliveryId(), Action: pb.SettleAction_SETTLE_ACTION_ACK}
	if o.exec == "" {
		outMu.Lock()
		defer outMu.Unlock()
		if o.output == "json" {
			b, _ := protojson.Marshal(d)
			fmt.Fprintf(c.OutOrStdout(), "%s\n", b)
		} else {
			fmt.Fprintf(c.OutOrStdout(), "%s\t%s\tseq=%d delivery=%d\t%s\n", d.GetCorrelationId(), d.GetEventType(), d.GetStreamSequence(), d.GetDeliveryCount(), d.GetPayload())
		}
		return ack
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", o.exec)
	cmd.Stdin = bytes.NewReader(d.GetPayload())
	cmd.Stdout = c.OutOrStdout()
	var stderr bytes.Buffer
	cmd.Stderr = io.MultiWriter(c.ErrOrStderr(), &stderr)
	cmd.Env = append(os.Environ(),
		"JSCTL_CORRELATION_ID="+d.GetCorrelationId(),
		"JSCTL_EVENT_TYPE="+d.GetEventType(),
		"JSCTL_GROUP="+d.GetGroup(),
		"JSCTL_STREAM_SEQUENCE="+strconv.FormatUint(d.GetStreamSequence(), 10),
		"JSCTL_DELIVERY_COUNT="+strconv.FormatUint(uint64(d.GetDeliveryCount()), 10),
	)
	for k, v := range d.GetHeaders() {
		cmd.Env = append(cmd.Env, "JSCTL_HEADER_"+envSafe(k)+"="+v)
	}
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return ack
	case errors.As(err, &exitErr) && exitErr.ExitCode() == ExitTerminate:
		return &pb.Settle{DeliveryId: d.GetDeliveryId(), Action: pb.SettleAction_SETTLE_ACTION_TERMINATE, Reason: lastLine(stderr.String(), "exit 99")}
	default:
		return &pb.Settle{DeliveryId: d.GetDeliveryId(), Action: pb.SettleAction_SETTLE_ACTION_NAK, Reason: err.Error()}
	}
}

func settleName(a pb.SettleAction) string {
	return strings.ToLower(strings.TrimPrefix(a.String(), "SETTLE_ACTION_"))
}

// envSafe turns a header name into an environment variable suffix.
func envSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, s)
}

// lastLine is the last non-empty line of s, or def.
func lastLine(s, def string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if l := strings.TrimSpace(lines[len(lines)-1]); l != "" {
		return l
	}
	return def
}
