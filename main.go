// Command jsctl is a NATS JetStream controller with durable acks and event
// status, in one binary. See README.md, or run `jsctl --help`.
package main

import (
	"context"
	"os"

	"github.com/jsctl/jsctl/cmd"
)

func main() {
	os.Exit(cmd.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
