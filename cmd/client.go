package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// connOptions are how a client reaches a server: TLS and a bearer token.
type connOptions struct {
	token   string
	tlsCA   string
	tlsCert string
	tlsKey  string
}

func (o *connOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.token, "token", os.Getenv(EnvPrefix+"TOKEN"), "bearer token (env JSCTL_TOKEN)")
	fs.StringVar(&o.tlsCA, "tls-ca", "", "CA certificate (PEM) to verify the server: turns on TLS")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "client certificate (PEM), for mTLS")
	fs.StringVar(&o.tlsKey, "tls-key", "", "client key (PEM), for mTLS")
}

// dial returns a connection to addr with the TLS and token of o.
func (o *connOptions) dial(addr string) (*grpc.ClientConn, error) {
	creds, err := clientTLS(o.tlsCA, o.tlsCert, o.tlsKey)
	if err != nil {
		return nil, err
	}
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if o.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(o.token)))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return cc, nil
}

// clientOptions are the flags every command that talks to a server shares.
type clientOptions struct {
	connOptions
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
	o.connOptions.AddFlags(fs)
}

func (o *clientOptions) validate() error {
	if o.output != "text" && o.output != "json" {
		return fmt.Errorf("--output %q: want text or json", o.output)
	}
	return nil
}

// call connects to the server and runs fn with a deadline of --timeout.
func (o *clientOptions) call(c *cobra.Command, fn func(ctx context.Context, cc *grpc.ClientConn) error) error {
	if err := o.validate(); err != nil {
		return err
	}
	cc, err := o.dial(o.addr)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx := runContext(c)
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	return fn(ctx, cc)
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

// bearer sends "authorization: Bearer <token>" with every call. It does not
// insist on TLS: a loopback address without TLS is jsctl's default.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }
