package cmd

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jsctl/jsctl/boltstore"
	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// TestRetentionExpiresProcessedEvents runs the whole app with the ledger on
// a clock the test moves: a processed event is kept for ledger.retention
// .processed, then EventStatus answers NotFound saying it expired; the CLI
// shows that, WatchEvent and Redrive answer NotFound, /metrics counts it and
// doctor finds the ledger consistent with its tombstones.
func TestRetentionExpiresProcessedEvents(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Groups = []GroupConfig{{Name: "billing"}}
	cfg.Ledger.Retention.Processed = 48 * time.Hour // not the default: the setting must reach the ledger
	var offset atomic.Int64
	a := startApp(t, cfg, func(a *App) {
		a.tuneLedger = func(s *boltstore.Store) {
			s.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
			s.CleanupInterval = 10 * time.Millisecond
		}
	})
	c, _ := dialApp(t, a)
	sub := subscribe(t, c, "billing", nil, 10)
	processed := func() string {
		t.Helper()
		id := publish(t, c, &pb.NewEventRequest{EventType: "order.paid", Payload: []byte("p")}).GetCorrelationId()
		if d := sub.next(); d.GetCorrelationId() != id {
			t.Fatalf("delivered %s, want %s", d.GetCorrelationId(), id)
		} else {
			sub.ack(d)
		}
		waitStatus(t, c, id, pb.Status_STATUS_PROCESSED)
		return id
	}
	older := processed()
	offset.Add(int64(time.Hour))
	newer := processed()

	// Past the older event's retention, not the newer one's.
	offset.Add(int64(cfg.Ledger.Retention.Processed - 30*time.Minute))
	expired := func(id string) error {
		_, err := c.EventStatus(ctxT(t), &pb.EventStatusRequest{CorrelationId: id})
		return err
	}
	var err error
	waitFor(t, 10*time.Second, func() bool { err = expired(older); return err != nil })
	want := fmt.Sprintf("not found: event %s expired: removed by retention on ", older)
	if st := status.Convert(err); st.Code() != codes.NotFound || !strings.HasPrefix(st.Message(), want) || !strings.HasSuffix(st.Message(), "(it was PROCESSED)") {
		t.Fatalf("EventStatus of the expired event: %v; want NotFound starting %q", err, want)
	}
	getStatus(t, c, newer) // still within its retention

	offset.Add(int64(time.Hour))
	waitFor(t, 10*time.Second, func() bool { return statusCode(expired(newer)) == codes.NotFound })

	t.Run("CLI", func(t *testing.T) {
		code, _, errOut := runCLI(t, "", "status", older, "--addr", a.GRPCAddr())
		if code != 1 || !strings.Contains(errOut, "NotFound: "+want) {
			t.Fatalf("jsctl status: exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("WatchEvent", func(t *testing.T) {
		watch, err := c.WatchEvent(ctxT(t), &pb.EventStatusRequest{CorrelationId: older})
		if err == nil {
			_, err = watch.Recv()
		}
		if statusCode(err) != codes.NotFound || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("WatchEvent: %v, want NotFound saying it expired", err)
		}
	})
	t.Run("Redrive", func(t *testing.T) {
		_, err := c.Redrive(ctxT(t), &pb.RedriveRequest{CorrelationId: older})
		if statusCode(err) != codes.NotFound {
			t.Fatalf("Redrive: %v, want NotFound", err)
		}
	})
	t.Run("Metrics", func(t *testing.T) {
		waitForMetrics(t, a, `jsctl_ledger_expired_total{status="processed"} 2`)
	})
	t.Run("Doctor", func(t *testing.T) {
		a.Close()
		code, out, errOut := runCLI(t, "", "doctor", "--data-dir", cfg.DataDir)
		if code != 0 || !strings.Contains(out, "2 expired events remembered (tombstones)") {
			t.Fatalf("doctor: exit %d\n%s%s", code, out, errOut)
		}
	})
}
