package cmd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// seedDataDir runs jsctl on a new data dir, publishes n events, stops it and
// returns the dir and the event IDs.
func seedDataDir(t *testing.T, n int) (string, []string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	a := startApp(t, testConfig(t, dir))
	c, _ := dialApp(t, a)
	var ids []string
	for i := range n {
		ids = append(ids, publish(t, c, &pb.NewEventRequest{EventType: "a", Payload: []byte{byte(i)}}).GetCorrelationId())
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, ids
}

// TestServeRefusesCorruptLedger: a damaged ledger stops `jsctl serve` at once
// with a clear message and exit 1, never a panic or a hang.
func TestServeRefusesCorruptLedger(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"FlippedMetaPages", func(t *testing.T, path string) {
			b := mustRead(t, path)
			for _, off := range []int{16, 40, 4096 + 16, 4096 + 40} {
				b[off] ^= 0xff
			}
			mustWrite(t, path, b)
		}},
		{"TruncatedBelowItsPages", func(t *testing.T, path string) {
			mustWrite(t, path, mustRead(t, path)[:3*4096])
		}},
		{"TruncatedToOnePage", func(t *testing.T, path string) {
			mustWrite(t, path, mustRead(t, path)[:4096])
		}},
		{"Garbage", func(t *testing.T, path string) {
			mustWrite(t, path, []byte(strings.Repeat("not a ledger ", 1000)))
		}},
	}
	dir, _ := seedDataDir(t, 50)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			copyDir := filepath.Join(t.TempDir(), "data")
			if err := os.CopyFS(copyDir, os.DirFS(dir)); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, filepath.Join(copyDir, "ledger.db"))
			start := time.Now()
			// A serve that does not refuse is stopped after 10s (and fails).
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var stdout, stderr syncBuffer
			code := Main(ctx, []string{"serve", "--data-dir", copyDir, "--grpc-listen", "127.0.0.1:0", "--http-listen", ""}, &stdout, &stderr)
			errOut := stderr.String()
			if code != 1 || !strings.Contains(errOut, "ledger corrupt") {
				t.Fatalf("exit %d, stderr %q; want 1 and a ledger corrupt message", code, errOut)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("took %s to refuse", took)
			}
			if code, _, _ := runCLI(t, "", "doctor", "--data-dir", copyDir); code == 0 {
				t.Fatal("doctor passed a damaged ledger")
			}
		})
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustWrite(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDoctor(t *testing.T) {
	dir, _ := seedDataDir(t, 20)
	t.Run("OK", func(t *testing.T) {
		code, out, errOut := runCLI(t, "", "doctor", "--data-dir", dir)
		if code != 0 || !strings.Contains(out, "20 events") || !strings.Contains(out, "PUBLISHED") || !strings.Contains(out, "OK") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("ErrRunning", func(t *testing.T) {
		a := startApp(t, testConfig(t, dir))
		code, _, errOut := runCLI(t, "", "doctor", "--data-dir", dir)
		a.Close()
		if code != 1 || !strings.Contains(errOut, "stop the jsctl") {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("LostTail", func(t *testing.T) {
		// The ledger knows events the stream does not: a JetStream store
		// that lost its tail. doctor notes it; start-up repairs it.
		lost := filepath.Join(t.TempDir(), "data")
		if err := os.CopyFS(lost, os.DirFS(dir)); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(lost, "jetstream")); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := runCLI(t, "", "doctor", "--data-dir", lost, "-o", "json")
		if code != 1 || !strings.Contains(out, "does not exist") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		a := startApp(t, testConfig(t, lost))
		a.Close()
		if code, out, errOut := runCLI(t, "", "doctor", "--data-dir", lost); code != 0 {
			t.Fatalf("after a start: exit %d\n%s%s", code, out, errOut)
		}
	})
}

// TestLedgerFull: when the ledger cannot grow, NewEvent fails with
// ResourceExhausted, nothing unacknowledged reaches the stream, the file
// stays consistent, and publishing works again once there is room.
func TestLedgerFull(t *testing.T) {
	cfg := testConfig(t, filepath.Join(t.TempDir(), "data"))
	cfg.Ledger.MaxSizeBytes = 2 << 20
	a := startApp(t, cfg)
	c, _ := dialApp(t, a)
	payload := make([]byte, 64<<10)
	var acked []string
	for i := 0; ; i++ {
		resp, err := c.NewEvent(ctxT(t), &pb.NewEventRequest{EventType: "big", Payload: payload})
		if statusCode(err) == codes.ResourceExhausted {
			break
		}
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		acked = append(acked, resp.GetEvent().GetCorrelationId())
		if i > 200 {
			t.Fatal("the ledger never filled up")
		}
	}
	if len(acked) == 0 {
		t.Fatal("not one event fit")
	}
	if ids := streamMsgIDs(t, a); len(ids) != len(acked) {
		t.Fatalf("stream has %d messages, %d were acknowledged", len(ids), len(acked))
	}
	for _, id := range acked {
		getStatus(t, c, id)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCLI(t, "", "doctor", "--data-dir", cfg.DataDir); code != 0 {
		t.Fatalf("doctor after full: exit %d\n%s%s", code, out, errOut)
	}

	cfg.Ledger.MaxSizeBytes = 0 // room again
	b := startApp(t, cfg)
	c, _ = dialApp(t, b)
	publish(t, c, &pb.NewEventRequest{EventType: "big", Payload: payload})
	for _, id := range acked {
		if st := getStatus(t, c, id); st.GetStatus() != pb.Status_STATUS_PUBLISHED {
			t.Fatalf("%s: %v", id, st.GetStatus())
		}
	}
}

// TestDeadlineRetryNoDuplicate: a deadline that expires mid-publish gets
// DeadlineExceeded; the retry with the same idempotency key returns the one
// event, and the stream holds it once.
func TestDeadlineRetryNoDuplicate(t *testing.T) {
	a := startApp(t, testConfig(t, t.TempDir()))
	c, _ := dialApp(t, a)
	exceeded := 0
	for i := range 30 {
		key := "order-" + string(rune('a'+i%26)) + time.Now().Format("150405.000000")
		req := &pb.NewEventRequest{EventType: "order.created", Payload: []byte(key), IdempotencyKey: key}
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(200+i*100)*time.Microsecond)
		_, err := c.NewEvent(ctx, req)
		cancel()
		if err != nil {
			if statusCode(err) != codes.DeadlineExceeded {
				t.Fatalf("short deadline: %v", err)
			}
			exceeded++
		}
		first := publish(t, c, req)
		again := publish(t, c, req)
		if again.GetCorrelationId() != first.GetCorrelationId() {
			t.Fatal("retries returned different events")
		}
	}
	if exceeded == 0 {
		t.Fatal("no call hit its deadline; the test proves nothing")
	}
	waitFor(t, 10*time.Second, func() bool { return a.ledger.PendingMarks() == 0 })
	ids := streamMsgIDs(t, a)
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("event %s twice in the stream", id)
		}
		seen[id] = true
	}
	if len(ids) != 30 {
		t.Fatalf("stream has %d messages for 30 idempotency keys", len(ids))
	}
}
