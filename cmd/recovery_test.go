package cmd

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jsctl/jsctl/boltstore"
	"github.com/jsctl/jsctl/embedded"
	"github.com/jsctl/jsctl/event"
	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// crashLedger appends n events to the ledger of cfg as a crash right after the
// ledger commit would leave them: ACCEPTED, not published. It returns them.
func crashLedger(t *testing.T, cfg Config, n int, mark func(s *boltstore.Store, e *event.Event, i int)) []*event.Event {
	t.Helper()
	s := boltstore.New(cfg.LedgerPath())
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	var out []*event.Event
	for i := range n {
		id, _ := event.NewID()
		e := &event.Event{ID: id, Type: "order.created", Payload: []byte{byte(i)}, CreatedAt: time.Now()}
		if _, _, err := s.Append(e, 0); err != nil {
			t.Fatal(err)
		}
		if mark != nil {
			mark(s, e, i)
		}
		out = append(out, e)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// lastReason is the reason of the event's last history entry.
func lastReason(st *pb.EventStatusResponse) string {
	h := st.GetHistory()
	return h[len(h)-1].GetReason()
}

// TestRecoveryPublishesAccepted: a crash after the ledger commit and before the
// publish leaves ACCEPTED events; the next start publishes them before serving.
func TestRecoveryPublishesAccepted(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	events := crashLedger(t, cfg, 5, nil)

	a := startApp(t, cfg)
	c, _ := dialApp(t, a)
	for _, e := range events {
		st := getStatus(t, c, e.ID.String())
		if st.GetStatus() != pb.Status_STATUS_PUBLISHED || st.GetEvent().GetStreamSequence() == 0 {
			t.Fatalf("%s: %v seq %d, want PUBLISHED", e.ID, st.GetStatus(), st.GetEvent().GetStreamSequence())
		}
		if r := lastReason(st); r != "republished" {
			t.Fatalf("%s: reason %q, want republished", e.ID, r)
		}
	}
	if ids := streamMsgIDs(t, a); len(ids) != len(events) {
		t.Fatalf("stream has %d messages, want %d", len(ids), len(events))
	}
}

// TestRecoveryFindsPublished: a crash after JetStream's PubAck and before the
// mark leaves ACCEPTED events that are in the stream; the next start finds them
// there and marks them without publishing again.
func TestRecoveryFindsPublished(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	events := crashLedger(t, cfg, 5, nil)

	// Publish them as the crashed process had, without marking.
	srv := embedded.New(cfg.JetStreamDir())
	srv.Logger = testLogger()
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Connect("crashed")
	if err != nil {
		t.Fatal(err)
	}
	q := embedded.NewQueue(nc)
	if err := q.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	seqs := map[event.ID]uint64{}
	for _, e := range events[:3] {
		p, err := q.PublishAsync(e)
		if err != nil {
			t.Fatal(err)
		}
		if seqs[e.ID], err = p.Wait(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	nc.Close()
	srv.Close()

	a := startApp(t, cfg)
	c, _ := dialApp(t, a)
	for i, e := range events {
		st := getStatus(t, c, e.ID.String())
		if st.GetStatus() != pb.Status_STATUS_PUBLISHED {
			t.Fatalf("%s: %v, want PUBLISHED", e.ID, st.GetStatus())
		}
		want := "republished"
		if i < 3 {
			want = "recovered: found in stream"
			if got := st.GetEvent().GetStreamSequence(); got != seqs[e.ID] {
				t.Fatalf("%s: seq %d, want the original %d", e.ID, got, seqs[e.ID])
			}
		}
		if r := lastReason(st); r != want {
			t.Fatalf("%s: reason %q, want %q", e.ID, r, want)
		}
	}
	ids := streamMsgIDs(t, a)
	if len(ids) != len(events) {
		t.Fatalf("stream has %d messages, want %d (no duplicates)", len(ids), len(events))
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("msg-id %s twice in the stream", id)
		}
		seen[id] = true
	}
}

// TestRecoveryLostTail: after a power cut JetStream may lose messages it had
// acknowledged; events the ledger marked at sequences beyond the stream's end
// are published again.
func TestRecoveryLostTail(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	events := crashLedger(t, cfg, 3, func(s *boltstore.Store, e *event.Event, i int) {
		s.MarkPublished(e.ID, uint64(100+i), "")
	})

	a := startApp(t, cfg)
	c, _ := dialApp(t, a)
	for _, e := range events {
		st := getStatus(t, c, e.ID.String())
		if st.GetStatus() != pb.Status_STATUS_PUBLISHED || st.GetEvent().GetStreamSequence() > uint64(len(events)) {
			t.Fatalf("%s: %v seq %d, want PUBLISHED at a new sequence", e.ID, st.GetStatus(), st.GetEvent().GetStreamSequence())
		}
		if r := lastReason(st); !strings.Contains(r, "stream ended at sequence 0") {
			t.Fatalf("%s: reason %q", e.ID, r)
		}
	}
	if ids := streamMsgIDs(t, a); len(ids) != len(events) {
		t.Fatalf("stream has %d messages, want %d", len(ids), len(events))
	}
}
