package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// syncBuffer is a bytes.Buffer safe for a command writing while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runInBackground runs jsctl with args until the returned stop is called;
// stop returns the exit code.
func runInBackground(t *testing.T, stdout, stderr *syncBuffer, args ...string) (stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- Main(ctx, args, stdout, stderr) }()
	stopped := false
	stop = func() int {
		if stopped {
			return 0
		}
		stopped = true
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(10 * time.Second):
			t.Fatal("command did not stop within 10s")
			return -1
		}
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestCLIStatusWait(t *testing.T) {
	a, c := consumerApp(t, GroupConfig{Name: "cli"})
	addr := "--addr=" + a.GRPCAddr()
	sub := subscribe(t, c, "cli", nil, 10)

	t.Run("ProcessedExit0", func(t *testing.T) {
		id := publish(t, c, &pb.NewEventRequest{EventType: "a"}).GetCorrelationId()
		done := make(chan int, 1)
		var out string
		go func() {
			code, o, _ := runCLI(t, "", "status", id, "--wait", addr)
			out = o
			done <- code
		}()
		sub.ack(sub.next())
		if code := <-done; code != 0 || !strings.Contains(out, "PROCESSED") {
			t.Fatalf("exit %d, output %q", code, out)
		}
	})
	t.Run("FailedExit1", func(t *testing.T) {
		id := publish(t, c, &pb.NewEventRequest{EventType: "a"}).GetCorrelationId()
		sub.settle(sub.next(), pb.SettleAction_SETTLE_ACTION_TERMINATE, 0, "nope")
		if code, out, _ := runCLI(t, "", "status", id, "--wait", "-o", "json", addr); code != 1 || !strings.Contains(out, "STATUS_FAILED") {
			t.Fatalf("exit %d, output %q", code, out)
		}
	})
	t.Run("TimeoutExit2", func(t *testing.T) {
		id := publish(t, c, &pb.NewEventRequest{EventType: "a"}).GetCorrelationId()
		sub.next() // delivered, never settled
		code, _, errOut := runCLI(t, "", "status", id, "--wait", "--timeout", "300ms", addr)
		if code != 2 || !strings.Contains(errOut, "timed out") {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
	})
}

func TestCLISubscribePrintsAndAcks(t *testing.T) {
	a, c := consumerApp(t)
	var stdout, stderr syncBuffer
	runInBackground(t, &stdout, &stderr, "subscribe", "printer", "--filter", "order.>", "-o", "json", "--addr", a.GRPCAddr())
	waitFor(t, 10*time.Second, func() bool { _, ok := a.ledger.Group("printer"); return ok })
	id := publish(t, c, &pb.NewEventRequest{EventType: "order.created", Payload: []byte("hello")}).GetCorrelationId()
	waitStatus(t, c, id, pb.Status_STATUS_PROCESSED)
	line := strings.TrimSpace(stdout.String())
	var d struct {
		CorrelationID string `json:"correlationId"`
		EventType     string `json:"eventType"`
		Payload       []byte `json:"payload"`
	}
	if err := json.Unmarshal([]byte(line), &d); err != nil {
		t.Fatalf("output %q: %v", line, err)
	}
	if d.CorrelationID != id || d.EventType != "order.created" || string(d.Payload) != "hello" {
		t.Fatalf("printed %+v", d)
	}
}

func TestCLISubscribeExec(t *testing.T) {
	a, c := consumerApp(t, GroupConfig{Name: "runner", MaxDeliveries: 3})
	dir := t.TempDir()
	script := filepath.Join(dir, "handle.sh")
	seen := filepath.Join(dir, "seen")
	body := `#!/bin/sh
payload=$(cat)
echo "$JSCTL_CORRELATION_ID $JSCTL_EVENT_TYPE $JSCTL_DELIVERY_COUNT $JSCTL_GROUP $JSCTL_HEADER_SOURCE $payload" >> ` + seen + `
case "$payload" in
  fail) echo "cannot parse" >&2; exit 99 ;;
  retry) [ "$JSCTL_DELIVERY_COUNT" -ge 2 ] || exit 1 ;;
esac
exit 0
`
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr syncBuffer
	stop := runInBackground(t, &stdout, &stderr, "subscribe", "runner", "--exec", script, "--addr", a.GRPCAddr())

	ok := publish(t, c, &pb.NewEventRequest{EventType: "job.run", Payload: []byte("ok"), Headers: map[string]string{"source": "cli"}}).GetCorrelationId()
	fail := publish(t, c, &pb.NewEventRequest{EventType: "job.run", Payload: []byte("fail")}).GetCorrelationId()
	retry := publish(t, c, &pb.NewEventRequest{EventType: "job.run", Payload: []byte("retry")}).GetCorrelationId()

	waitStatus(t, c, ok, pb.Status_STATUS_PROCESSED)
	st := waitStatus(t, c, fail, pb.Status_STATUS_FAILED)
	if gs := groupStatus(st, "runner"); gs.GetLastReason() != "cannot parse" {
		t.Fatalf("exit 99: group status %v, want reason from stderr", gs)
	}
	st = waitStatus(t, c, retry, pb.Status_STATUS_PROCESSED)
	if gs := groupStatus(st, "runner"); gs.GetDeliveryCount() != 2 {
		t.Fatalf("nak then ack: %v", gs)
	}
	log, _ := os.ReadFile(seen)
	if !strings.Contains(string(log), ok+" job.run 1 runner cli ok") {
		t.Fatalf("command did not see the event's fields:\n%s", log)
	}
	if code := stop(); code != 0 {
		t.Fatalf("subscribe exited %d after Ctrl-C, want 0; stderr %s", code, stderr.String())
	}
}

func TestCLIRedriveAndEventsList(t *testing.T) {
	a, c := consumerApp(t, GroupConfig{Name: "dlq"})
	addr := "--addr=" + a.GRPCAddr()
	sub := subscribe(t, c, "dlq", nil, 10)
	id := publish(t, c, &pb.NewEventRequest{EventType: "order.created"}).GetCorrelationId()
	sub.settle(sub.next(), pb.SettleAction_SETTLE_ACTION_TERMINATE, 0, "broken")
	waitStatus(t, c, id, pb.Status_STATUS_FAILED)

	code, out, errOut := runCLI(t, "", "events", "ls", "--status", "failed", addr)
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "FAILED") {
		t.Fatalf("events ls: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "", "redrive", id, addr)
	if code != 0 || !strings.Contains(out, "redriven as stream sequence") {
		t.Fatalf("redrive: exit %d\n%s%s", code, out, errOut)
	}
	sub.ack(sub.next())
	waitStatus(t, c, id, pb.Status_STATUS_PROCESSED)
	code, out, _ = runCLI(t, "", "events", "ls", "--status", "failed", "-o", "json", addr)
	if code != 0 || strings.Contains(out, id) {
		t.Fatalf("after redrive the event is still listed as failed: %s", out)
	}
	t.Run("ErrBadStatus", func(t *testing.T) {
		if code, _, errOut := runCLI(t, "", "events", "ls", "--status", "lost", addr); code != 1 || !strings.Contains(errOut, "--status") {
			t.Fatalf("exit %d %q", code, errOut)
		}
	})
}
