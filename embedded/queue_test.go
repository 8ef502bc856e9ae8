package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jsctl/jsctl/event"
)

func TestQueueOpen(t *testing.T) {
	srv := newServer(t, nil)
	q := openQueue(t, connect(t, srv), func(q *Queue) { q.DuplicateWindow = 45 * time.Second })

	cfg := streamInfo(t, q).Config
	if cfg.Name != "EVENTS" {
		t.Errorf("stream name %q, want EVENTS", cfg.Name)
	}
	if !slices.Equal(cfg.Subjects, []string{"events.>", "jsctl.redrive.EVENTS.>"}) {
		t.Errorf("subjects %q, want events.> and the redrive subjects", cfg.Subjects)
	}
	if cfg.Storage != jetstream.FileStorage {
		t.Errorf("storage %v, want file", cfg.Storage)
	}
	if cfg.Retention != jetstream.LimitsPolicy {
		t.Errorf("retention %v, want limits", cfg.Retention)
	}
	if cfg.Duplicates != 45*time.Second {
		t.Errorf("duplicate window %s, want 45s", cfg.Duplicates)
	}
	if got := q.LastSequence(); got != 0 {
		t.Errorf("LastSequence() of a new stream = %d, want 0", got)
	}
	if q.JetStream() == nil {
		t.Error("JetStream() is nil after Open")
	}

	t.Run("UpdatesDuplicateWindow", func(t *testing.T) {
		// Another process (connection) opening the queue with a new setting
		// updates the existing stream.
		q2 := openQueue(t, connect(t, srv), func(q *Queue) { q.DuplicateWindow = 90 * time.Second })
		if got := streamInfo(t, q2).Config.Duplicates; got != 90*time.Second {
			t.Errorf("duplicate window after reopen %s, want 90s", got)
		}
	})

	t.Run("ReadsLastSequence", func(t *testing.T) {
		publish(t, q, newEvent(t, "order.created", "1"))
		seq := publish(t, q, newEvent(t, "order.created", "2"))
		q3 := openQueue(t, connect(t, srv), nil)
		if got := q3.LastSequence(); got != seq {
			t.Errorf("LastSequence() of a queue opened on a stream with %d messages = %d", seq, got)
		}
	})
}

func TestQueueOpenDefaults(t *testing.T) {
	q := openQueue(t, connect(t, newServer(t, nil)), nil)
	if got := streamInfo(t, q).Config.Duplicates; got != 30*time.Second {
		t.Errorf("default duplicate window %s, want 30s", got)
	}
}

func TestQueuePublishAsync(t *testing.T) {
	q := openQueue(t, connect(t, newServer(t, nil)), nil)
	e := newEvent(t, "order.created", `{"order":42}`)
	e.Headers = map[string]string{"k": "v"}

	seq := publish(t, q, e)
	if seq != 1 {
		t.Errorf("first sequence %d, want 1", seq)
	}
	if got := q.LastSequence(); got < seq {
		t.Errorf("LastSequence() = %d, want >= %d", got, seq)
	}

	m := getMsg(t, q, seq)
	if m.Subject != "events.order.created" {
		t.Errorf("subject %q, want events.order.created", m.Subject)
	}
	if !bytes.Equal(m.Data, e.Payload) {
		t.Errorf("payload %q, want %q", m.Data, e.Payload)
	}
	if got := m.Header.Get("k"); got != "v" {
		t.Errorf("header k = %q, want v", got)
	}
	if got := m.Header.Get(jetstream.MsgIDHeader); got != e.ID.String() {
		t.Errorf("header %s = %q, want the event ID %s", jetstream.MsgIDHeader, got, e.ID)
	}

	t.Run("NoHeaders", func(t *testing.T) {
		e := newEvent(t, "order.shipped", "x")
		m := getMsg(t, q, publish(t, q, e))
		if got := m.Header.Get(jetstream.MsgIDHeader); got != e.ID.String() {
			t.Errorf("header %s = %q, want the event ID %s", jetstream.MsgIDHeader, got, e.ID)
		}
		for k := range m.Header {
			if !strings.HasPrefix(k, "Nats-") {
				t.Errorf("header %s on an event without headers", k)
			}
		}
	})

	t.Run("MaxPayload", func(t *testing.T) {
		// jsctl accepts payloads up to 1 MiB plus headers: more than NATS's
		// default max_payload.
		e := newEvent(t, "order.big", "")
		e.Payload = bytes.Repeat([]byte{'x'}, event.DefaultLimits().MaxPayloadBytes)
		e.Headers = map[string]string{"h": string(bytes.Repeat([]byte{'y'}, event.DefaultLimits().MaxHeaderBytes-1))}
		m := getMsg(t, q, publish(t, q, e))
		if len(m.Data) != len(e.Payload) {
			t.Errorf("stored payload is %d bytes, want %d", len(m.Data), len(e.Payload))
		}
	})
}

func TestQueuePublishAsyncDuplicate(t *testing.T) {
	q := openQueue(t, connect(t, newServer(t, nil)), nil)
	e := newEvent(t, "order.created", "once")

	first := publish(t, q, e)
	second := publish(t, q, e)
	if first != second {
		t.Errorf("publishing the same event twice gave sequences %d and %d, want the same", first, second)
	}
	if n := streamInfo(t, q).State.Msgs; n != 1 {
		t.Errorf("stream holds %d messages, want 1", n)
	}
	if got := publish(t, q, newEvent(t, "order.created", "once")); got != first+1 {
		t.Errorf("a different event with the same body got sequence %d, want %d", got, first+1)
	}
}

func TestQueuePublishAsyncConcurrent(t *testing.T) {
	const n = 200
	q := openQueue(t, connect(t, newServer(t, nil)), func(q *Queue) { q.MaxInFlight = 8 })
	ctx := testContext(t)

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seqs = make(map[uint64]event.ID)
		errs []error
	)
	for i := range n {
		wg.Go(func() {
			e := newEvent(t, "order.created", fmt.Sprint(i))
			pub, err := q.PublishAsync(e)
			if err == nil {
				var seq uint64
				if seq, err = pub.Wait(ctx); err == nil {
					mu.Lock()
					seqs[seq] = e.ID
					mu.Unlock()
					return
				}
			}
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d publishes failed, first: %v", len(errs), errs[0])
	}
	if len(seqs) != n {
		t.Fatalf("%d distinct sequences for %d events", len(seqs), n)
	}
	for seq := range uint64(n) {
		if _, ok := seqs[seq+1]; !ok {
			t.Errorf("no event acknowledged at sequence %d", seq+1)
		}
	}
	if got := q.LastSequence(); got != n {
		t.Errorf("LastSequence() = %d, want %d", got, n)
	}
	got, err := q.Sequences(ctx, 0)
	if err != nil {
		t.Fatalf("Sequences: %v", err)
	}
	for seq, id := range seqs {
		if got[id] != seq {
			t.Errorf("Sequences()[%s] = %d, want %d", id, got[id], seq)
		}
	}
}

func TestQueueSequences(t *testing.T) {
	q := openQueue(t, connect(t, newServer(t, nil)), nil)
	ctx := testContext(t)

	t.Run("EmptyStream", func(t *testing.T) {
		got, err := q.Sequences(ctx, 0)
		if err != nil {
			t.Fatalf("Sequences: %v", err)
		}
		if len(got) != 0 {
			t.Errorf("Sequences(0) of an empty stream = %v, want empty", got)
		}
	})

	want := make(map[event.ID]uint64)
	var ids []event.ID
	for i := range 5 {
		e := newEvent(t, "order.created", fmt.Sprint(i))
		want[e.ID] = publish(t, q, e)
		ids = append(ids, e.ID)
	}
	last := q.LastSequence()
	if last != 5 {
		t.Fatalf("LastSequence() = %d after 5 events, want 5", last)
	}

	for _, tc := range []struct {
		name  string
		after uint64
		want  map[event.ID]uint64
	}{
		{"All", 0, want},
		{"After3", 3, map[event.ID]uint64{ids[3]: 4, ids[4]: 5}},
		{"AfterLast", last, map[event.ID]uint64{}},
		{"BeyondLast", last + 10, map[event.ID]uint64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A scan that waited for messages past the end would run into
			// this deadline and fail.
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			got, err := q.Sequences(ctx, tc.after)
			if err != nil {
				t.Fatalf("Sequences(%d): %v", tc.after, err)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("Sequences(%d) = %v, want %v", tc.after, got, tc.want)
			}
		})
	}
}

func TestQueueSequencesSkipsForeignMessages(t *testing.T) {
	srv := newServer(t, nil)
	q := openQueue(t, connect(t, srv), nil)
	plain := connect(t, srv) // a client that knows nothing of jsctl
	ctx := testContext(t)

	want := make(map[event.ID]uint64)
	add := func() {
		e := newEvent(t, "order.created", "jsctl")
		want[e.ID] = publish(t, q, e)
	}
	// foreign publishes a core NATS message (no JetStream ack) with the
	// given message ID header, if any, and waits until the stream has it.
	foreign := func(msgID string) {
		t.Helper()
		m := nats.NewMsg("events.foreign")
		m.Data = []byte("not jsctl")
		if msgID != "" {
			m.Header.Set(jetstream.MsgIDHeader, msgID)
		}
		wantLast := streamInfo(t, q).State.LastSeq + 1
		if err := plain.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
			if got := streamInfo(t, q).State.LastSeq; got != wantLast {
				return fmt.Errorf("stream last sequence %d, want %d", got, wantLast)
			}
			return nil
		})
	}

	add()                     // 1
	foreign("")               // 2: no message ID
	add()                     // 3
	foreign("not-a-uuid")     // 4
	foreign(uuid.NewString()) // 5: a UUID, but not version 7
	add()                     // 6
	foreign("")               // 7: a foreign message last
	if n := streamInfo(t, q).State.Msgs; n != 7 {
		t.Fatalf("stream holds %d messages, want 7", n)
	}

	for _, tc := range []struct {
		name  string
		after uint64
		want  map[event.ID]uint64
	}{
		{"All", 0, want},
		{"FromForeign", 3, filter(want, 4)},
		{"OnlyForeignLeft", 6, map[event.ID]uint64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := q.Sequences(ctx, tc.after)
			if err != nil {
				t.Fatalf("Sequences(%d): %v", tc.after, err)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("Sequences(%d) = %v, want %v", tc.after, got, tc.want)
			}
		})
	}
}

func TestQueuePrefix(t *testing.T) {
	q := openQueue(t, connect(t, newServer(t, nil)), func(q *Queue) { q.Prefix = "custom" })
	if got := q.Subject("order.created"); got != "custom.order.created" {
		t.Errorf("Subject(order.created) = %q, want custom.order.created", got)
	}
	if got := streamInfo(t, q).Config.Subjects; !slices.Equal(got, []string{"custom.>", "jsctl.redrive.EVENTS.>"}) {
		t.Errorf("subjects %q, want custom.> and the redrive subjects", got)
	}
	e := newEvent(t, "order.created", "p")
	if m := getMsg(t, q, publish(t, q, e)); m.Subject != "custom.order.created" {
		t.Errorf("published on %q, want custom.order.created", m.Subject)
	}
}

func TestPublicationWait(t *testing.T) {
	t.Run("ContextCanceled", func(t *testing.T) {
		q := openQueue(t, connect(t, newServer(t, nil)), nil)
		canceled, cancel := context.WithCancel(t.Context())
		cancel()

		// When the ack has already arrived, Wait may pick it over the done
		// context (select chooses at random), so publish several events; at
		// least one Wait returns context.Canceled with overwhelming odds.
		const n = 20
		type pending struct {
			id  event.ID
			pub event.Publication
		}
		var retry []pending
		got := make(map[uint64]event.ID)
		for i := range n {
			e := newEvent(t, "order.created", fmt.Sprint(i))
			pub, err := q.PublishAsync(e)
			if err != nil {
				t.Fatal(err)
			}
			seq, err := pub.Wait(canceled)
			switch {
			case err == nil:
				got[seq] = e.ID
			case errors.Is(err, context.Canceled):
				if seq != 0 {
					t.Errorf("Wait returned sequence %d with %v", seq, err)
				}
				retry = append(retry, pending{e.ID, pub})
			default:
				t.Fatalf("Wait with a canceled context: %v, want context.Canceled", err)
			}
		}
		if len(retry) == 0 {
			t.Fatalf("no Wait of %d with a canceled context returned context.Canceled", n)
		}

		ctx := testContext(t)
		for _, p := range retry {
			seq, err := p.pub.Wait(ctx)
			if err != nil {
				t.Fatalf("second Wait for %s: %v (the ack was lost)", p.id, err)
			}
			got[seq] = p.id
		}
		if len(got) != n {
			t.Fatalf("%d distinct sequences for %d events", len(got), n)
		}
		for seq, id := range got {
			if msgID := getMsg(t, q, seq).Header.Get(jetstream.MsgIDHeader); msgID != id.String() {
				t.Errorf("sequence %d holds %s, Wait said %s", seq, msgID, id)
			}
		}
		if last := q.LastSequence(); last != n {
			t.Errorf("LastSequence() = %d, want %d", last, n)
		}
	})

	t.Run("ErrNoStreamResponse", func(t *testing.T) {
		q := openQueue(t, connect(t, newServer(t, nil)), nil)
		ctx := testContext(t)
		if err := q.JetStream().DeleteStream(ctx, q.Stream); err != nil {
			t.Fatal(err)
		}
		pub, err := q.PublishAsync(newEvent(t, "order.created", "lost"))
		if err != nil {
			t.Fatalf("PublishAsync: %v", err)
		}
		seq, err := pub.Wait(ctx)
		if err == nil {
			t.Fatalf("Wait without a stream returned sequence %d", seq)
		}
		if !errors.Is(err, jetstream.ErrNoStreamResponse) {
			t.Errorf("Wait without a stream: %v, want jetstream.ErrNoStreamResponse", err)
		}
		if ctx.Err() != nil {
			t.Errorf("Wait only returned when the test context expired: %v", err)
		}
	})
}

func TestQueueReopenAfterRestart(t *testing.T) {
	dir := t.TempDir()
	srv := New(dir)
	srv.Logger = discardLogger()
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Connect("before")
	if err != nil {
		t.Fatal(err)
	}
	q := openQueue(t, nc, nil)
	var events []*event.Event
	for i := range 3 {
		e := newEvent(t, "order.created", fmt.Sprint(i))
		publish(t, q, e)
		events = append(events, e)
	}
	last := q.LastSequence()
	nc.Close()
	if err := srv.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	srv2 := newServer(t, func(s *Server) { s.StoreDir = dir })
	q2 := openQueue(t, connect(t, srv2), nil)
	if got := q2.LastSequence(); got != last {
		t.Fatalf("LastSequence() after restart = %d, want %d", got, last)
	}
	for i, e := range events {
		m := getMsg(t, q2, uint64(i+1))
		if got := m.Header.Get(jetstream.MsgIDHeader); got != e.ID.String() || !bytes.Equal(m.Data, e.Payload) {
			t.Errorf("sequence %d after restart: id %s payload %q, want id %s payload %q", i+1, got, m.Data, e.ID, e.Payload)
		}
	}
	got, err := q2.Sequences(testContext(t), 0)
	if err != nil {
		t.Fatalf("Sequences after restart: %v", err)
	}
	if len(got) != len(events) {
		t.Errorf("Sequences after restart found %d events, want %d", len(got), len(events))
	}

	t.Run("DedupeSurvives", func(t *testing.T) {
		if seq := publish(t, q2, events[1]); seq != 2 {
			t.Errorf("republishing event 2 after restart got sequence %d, want 2", seq)
		}
		if n := streamInfo(t, q2).State.Msgs; n != uint64(len(events)) {
			t.Errorf("stream holds %d messages, want %d", n, len(events))
		}
	})
}

// openQueue opens a Queue on nc after configure (if any) has set its fields.
func openQueue(t *testing.T, nc *nats.Conn, configure func(*Queue)) *Queue {
	t.Helper()
	q := NewQueue(nc)
	if configure != nil {
		configure(q)
	}
	if err := q.Open(testContext(t)); err != nil {
		t.Fatalf("open queue: %v", err)
	}
	return q
}

func newEvent(t *testing.T, typ, payload string) *event.Event {
	id, err := event.NewID()
	if err != nil {
		t.Error(err)
	}
	return &event.Event{ID: id, Type: typ, Payload: []byte(payload)}
}

// publish publishes e and waits for its sequence.
func publish(t *testing.T, q *Queue, e *event.Event) uint64 {
	t.Helper()
	pub, err := q.PublishAsync(e)
	if err != nil {
		t.Fatalf("PublishAsync: %v", err)
	}
	seq, err := pub.Wait(testContext(t))
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return seq
}

func streamInfo(t *testing.T, q *Queue) *jetstream.StreamInfo {
	t.Helper()
	s, err := q.JetStream().Stream(testContext(t), q.Stream)
	if err != nil {
		t.Fatalf("stream %s: %v", q.Stream, err)
	}
	return s.CachedInfo()
}

func getMsg(t *testing.T, q *Queue, seq uint64) *jetstream.RawStreamMsg {
	t.Helper()
	ctx := testContext(t)
	s, err := q.JetStream().Stream(ctx, q.Stream)
	if err != nil {
		t.Fatalf("stream %s: %v", q.Stream, err)
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		t.Fatalf("get message %d: %v", seq, err)
	}
	return m
}

// filter returns the entries of m with a sequence of at least from.
func filter(m map[event.ID]uint64, from uint64) map[event.ID]uint64 {
	out := make(map[event.ID]uint64)
	for id, seq := range m {
		if seq >= from {
			out[id] = seq
		}
	}
	return out
}

// TestQueueSequencesDeletedTail: when the messages after the starting point
// were deleted, Sequences returns at once instead of waiting for them.
func TestQueueSequencesDeletedTail(t *testing.T) {
	q := openQueue(t, connect(t, newServer(t, nil)), nil)
	var ids []event.ID
	for i := range 3 {
		e := newEvent(t, "order.created", fmt.Sprint(i))
		publish(t, q, e)
		ids = append(ids, e.ID)
	}
	s, err := q.JetStream().Stream(testContext(t), q.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(testContext(t), 3); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	got, err := q.Sequences(ctx, 2)
	if err != nil {
		t.Fatalf("Sequences after a deleted tail: %v", err)
	}
	if len(got) != 0 {
		t.Fatalf("Sequences(2) = %v, want none", got)
	}
	if got, err := q.Sequences(ctx, 0); err != nil || len(got) != 2 || got[ids[0]] != 1 || got[ids[1]] != 2 {
		t.Fatalf("Sequences(0) = %v, %v; want the two live messages", got, err)
	}
}
