package embedded

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jsctl/jsctl/event"
)

// Queue publishes events to the stream. Create it with NewQueue, set fields,
// then Open. It implements event.Queue.
type Queue struct {
	// Stream is the stream's name. Default "EVENTS".
	Stream string

	// Prefix is prepended to event types to form subjects. Default "events".
	Prefix string

	// DuplicateWindow is how long JetStream remembers message IDs. Default 30s.
	DuplicateWindow time.Duration

	// MaxAge and MaxBytes limit the stream (oldest messages go first); 0 is
	// no limit. Default 0. The ledger keeps the events' records regardless.
	MaxAge   time.Duration
	MaxBytes int64

	// AckTimeout bounds the wait for one PubAck. Default 10s.
	AckTimeout time.Duration

	// MaxInFlight caps publishes awaiting a PubAck; more wait. Default 16384.
	MaxInFlight int

	nc   *nats.Conn
	js   jetstream.JetStream
	last atomic.Uint64 // highest sequence known to be in the stream

	subjects       sync.Map // event type -> subject
	cachedSubjects atomic.Int64

	consMu    sync.Mutex
	consumers map[string]jetstream.Consumer

	selfAcked ackSet // acks made through a settler, their reports to come
}

// NewQueue returns a Queue on the connection nc with defaults set.
func NewQueue(nc *nats.Conn) *Queue {
	return &Queue{
		Stream:          "EVENTS",
		Prefix:          "events",
		DuplicateWindow: 30 * time.Second,
		AckTimeout:      10 * time.Second,
		MaxInFlight:     16384,
		nc:              nc,
	}
}

var _ event.Queue = (*Queue)(nil)

// Open creates the stream or updates its configuration, and reads its last
// sequence.
func (q *Queue) Open(ctx context.Context) error {
	js, err := jetstream.New(q.nc,
		jetstream.WithPublishAsyncMaxPending(q.MaxInFlight),
		jetstream.WithPublishAsyncTimeout(q.AckTimeout),
	)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	q.js = js
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        q.Stream,
		Description: "jsctl events",
		Subjects:    q.streamSubjects(),
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Duplicates:  q.DuplicateWindow,
		MaxAge:      q.MaxAge,
		MaxBytes:    max(q.MaxBytes, 0),
		AllowDirect: true,
	})
	if err != nil {
		return fmt.Errorf("provision stream %s: %w", q.Stream, err)
	}
	q.last.Store(s.CachedInfo().State.LastSeq)
	return nil
}

// Subject returns the subject an event type is published on. Subjects of
// the first maxCachedSubjects event types are kept, so that publishing does
// not build the same string for every event.
func (q *Queue) Subject(eventType string) string {
	if v, ok := q.subjects.Load(eventType); ok {
		return v.(string)
	}
	subject := q.Prefix + "." + eventType
	if q.cachedSubjects.Add(1) <= maxCachedSubjects {
		q.subjects.Store(eventType, subject)
	}
	return subject
}

// maxCachedSubjects bounds Subject's cache: event types are the clients'.
const maxCachedSubjects = 1024

// JetStream returns the JetStream context, for callers that need more of it.
func (q *Queue) JetStream() jetstream.JetStream { return q.js }

// PublishAsync implements event.Queue.
func (q *Queue) PublishAsync(e *event.Event) (event.Publication, error) {
	m := &nats.Msg{Subject: q.Subject(e.Type), Data: e.Payload}
	if len(e.Headers) > 0 {
		m.Header = make(nats.Header, len(e.Headers)+1)
		for k, v := range e.Headers {
			m.Header[k] = []string{v}
		}
	}
	f, err := q.js.PublishMsgAsync(m, jetstream.WithMsgID(e.ID.String()))
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", m.Subject, err)
	}
	return publication{f, q}, nil
}

type publication struct {
	f jetstream.PubAckFuture
	q *Queue
}

func (p publication) Wait(ctx context.Context) (uint64, error) {
	select {
	case ack := <-p.f.Ok():
		p.q.observe(ack.Sequence)
		return ack.Sequence, nil
	case err := <-p.f.Err():
		return 0, err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (q *Queue) observe(seq uint64) {
	for {
		cur := q.last.Load()
		if seq <= cur || q.last.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// LastSequence implements event.Queue.
func (q *Queue) LastSequence() uint64 { return q.last.Load() }

// Sequences implements event.Queue: it reads the headers of every message
// after the given sequence and returns the sequence of each jsctl message ID.
func (q *Queue) Sequences(ctx context.Context, after uint64) (map[event.ID]uint64, error) {
	s, err := q.js.Stream(ctx, q.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", q.Stream, err)
	}
	st := s.CachedInfo().State
	out := make(map[event.ID]uint64)
	if st.Msgs == 0 || st.LastSeq <= after {
		return out, nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   max(after+1, st.FirstSeq),
		HeadersOnly:   true,
	})
	if err != nil {
		return nil, fmt.Errorf("scan stream %s: %w", q.Stream, err)
	}
	// The stream's last sequence may belong to a deleted message; ask the
	// consumer how many messages it will actually deliver.
	info, err := c.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("scan stream %s: %w", q.Stream, err)
	}
	if info.NumPending == 0 {
		return out, nil
	}
	it, err := c.Messages()
	if err != nil {
		return nil, fmt.Errorf("scan stream %s: %w", q.Stream, err)
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("scan stream %s: %w", q.Stream, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return nil, fmt.Errorf("scan stream %s: %w", q.Stream, err)
		}
		if id, err := event.ParseID(msg.Headers().Get(jetstream.MsgIDHeader)); err == nil {
			out[id] = meta.Sequence.Stream
		}
		if meta.NumPending == 0 || meta.Sequence.Stream >= st.LastSeq {
			return out, nil
		}
	}
}
