package embedded

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jsctl/jsctl/event"
)

func TestAckMetricSequence(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		seq  uint64
		ok   bool
	}{
		{"OK", `{"type":"io.nats.jetstream.metric.v1.consumer_ack","id":"x","timestamp":"2026-01-02T03:04:05Z","stream":"EVENTS","consumer":"g","consumer_seq":7,"stream_seq":42,"ack_time":1000,"deliveries":1}`, 42, true},
		{"Last", `{"stream_seq":18446744073709551615}`, 18446744073709551615, true},
		{"ErrMissing", `{"consumer_seq":7}`, 0, false},
		{"ErrNotANumber", `{"stream_seq":"42"}`, 0, false},
		{"ErrSpaced", `{"stream_seq": 42}`, 0, false}, // not nats-server's encoding: decode it in full
		{"ErrEmpty", ``, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seq, ok := ackMetricSequence([]byte(tc.data))
			if seq != tc.seq || ok != tc.ok {
				t.Errorf("ackMetricSequence(%s) = %d, %v; want %d, %v", tc.data, seq, ok, tc.seq, tc.ok)
			}
		})
	}
}

// TestAdvisoriesDropOwnAcks: the ack report of an ack made through a
// delivery's Settler is not passed on (the pipeline recorded it already);
// an ack by a native client is.
func TestAdvisoriesDropOwnAcks(t *testing.T) {
	q := openQueue(t, connect(t, newServer(t, nil)), nil)
	g := event.DefaultGroup("g")
	if err := q.EnsureGroup(testContext(t), g); err != nil {
		t.Fatal(err)
	}
	cons, err := q.JetStream().Consumer(testContext(t), q.Stream, "g")
	if err != nil {
		t.Fatal(err)
	}
	nativeAck := func() uint64 {
		t.Helper()
		seq := publish(t, q, newEvent(t, "a", "native"))
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			if err := m.DoubleAck(testContext(t)); err != nil {
				t.Fatal(err)
			}
		}
		return seq
	}
	reports := make(chan event.SeqUpdate, 16)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	go q.Advisories(ctx, func(u event.SeqUpdate) { reports <- u })
	// Native acks until one is reported: the subscriptions are in place.
	checkFor(t, 10*time.Second, time.Millisecond, func() error {
		probe := nativeAck()
		for {
			select {
			case u := <-reports:
				if u.Sequence == probe {
					return nil
				}
			case <-time.After(200 * time.Millisecond):
				return errors.New("no report of a native ack")
			}
		}
	})

	own := publish(t, q, newEvent(t, "a", "own"))
	var d *event.Delivery
	if err := q.Fetch(testContext(t), "g", 1, func(got *event.Delivery) { d = got }); err != nil || d == nil {
		t.Fatalf("fetch: %v, %v", d, err)
	}
	if err := d.Settler.Ack(); err != nil {
		t.Fatal(err)
	}
	native := nativeAck()

	// Reports of one consumer arrive in order: the next one must be the
	// native ack's.
	select {
	case u := <-reports:
		if u.Sequence != native || u.Outcome != event.OutcomeAcked || u.Group != "g" {
			t.Fatalf("next report %+v, want the native ack of sequence %d (own ack was %d)", u, native, own)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no report of the native ack")
	}
}

// TestAckSetBounded: acks whose reports never come are forgotten after two
// generations; the newer ones are still known.
func TestAckSetBounded(t *testing.T) {
	var a ackSet
	for seq := range uint64(2*ackSetGeneration + 1) {
		a.add("g", seq)
	}
	if a.take("g", 0) {
		t.Error("the oldest ack is still remembered after two generations")
	}
	if !a.take("g", ackSetGeneration) || !a.take("g", 2*ackSetGeneration) {
		t.Error("a recent ack is forgotten")
	}
	if a.take("g", 2*ackSetGeneration) || a.take("other", 2*ackSetGeneration-1) {
		t.Error("take reported an ack twice, or one of another group")
	}
	if n := len(a.cur) + len(a.prev); n > 2*ackSetGeneration {
		t.Errorf("%d acks remembered, want at most %d", n, 2*ackSetGeneration)
	}
}
