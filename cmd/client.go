package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// clientOptions are the flags every command that talks to a server shares.
type clientOptions struct {
	addr    string
	timeout time.Duration
	output  string
}

func (o *clientOptions) AddFlags(fs *pflag.FlagSet) {
	addr := os.Getenv(EnvPrefix + "ADDR")
	if addr == "" {
		addr = DefaultConfig().GRPC.Listen
	}
	fs.StringVar(&o.addr, "addr", addr, "jsctl gRPC address (env JSCTL_ADDR)")
	if o.timeout == 0 {
		o.timeout = 10 * time.Second
	}
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "deadline for the call")
	fs.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
}

func (o *clientOptions) validate() error {
	if o.output != "text" && o.output != "json" {
		return fmt.Errorf("--output %q: want text or json", o.output)
	}
	return nil
}

// dial connects to the server; the caller closes the connection.
func (o *clientOptions) dial() (pb.ControllerClient, *grpc.ClientConn, error) {
	cc, err := grpc.NewClient(o.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", o.addr, err)
	}
	return pb.NewControllerClient(cc), cc, nil
}

func (o *clientOptions) callContext(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, o.timeout)
}

// printJSON writes m as indented protojson, the same JSON grpcurl prints.
func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	// protojson varies its whitespace on purpose; print it in one stable form.
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = out.WriteTo(w)
	return err
}
