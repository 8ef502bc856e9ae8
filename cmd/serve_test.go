package cmd

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// serveInBackground runs `jsctl serve` as a user would (through Main) until
// the returned stop function is called; stop returns the exit code.
func serveInBackground(t *testing.T, dir, grpcAddr string) (stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"serve", "--data-dir", dir, "--grpc-listen", grpcAddr, "--http-listen", "", "--log-format", "json"}, io.Discard, io.Discard)
	}()
	waitFor(t, 10*time.Second, func() bool {
		select {
		case code := <-done:
			t.Fatalf("serve exited early with %d", code)
		default:
		}
		code, _, _ := runCLI(t, "", "health", "--addr", grpcAddr, "--timeout", "200ms")
		return code == 0
	})
	return func() int {
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(15 * time.Second):
			t.Fatal("serve did not stop within 15s")
			return -1
		}
	}
}

// TestServeCommandStopStart runs the serve command, publishes with the CLI,
// stops it as Ctrl-C would, starts it again on the same data dir and finds the
// event with the CLI.
func TestServeCommandStopStart(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	stop := serveInBackground(t, dir, addr)
	code, out, errOut := runCLI(t, "", "publish", "order.created", "kept", "--addr", addr)
	if code != 0 {
		t.Fatalf("publish: %d %s", code, errOut)
	}
	id := strings.Fields(out)[0]
	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d after stop, want 0", code)
	}

	stop = serveInBackground(t, dir, addr)
	defer stop()
	code, out, errOut = runCLI(t, "", "status", id, "--payload", "--addr", addr)
	if code != 0 || !strings.Contains(out, "PUBLISHED") || !strings.Contains(out, `"kept"`) {
		t.Fatalf("status after restart: exit %d\n%s%s", code, out, errOut)
	}
}
