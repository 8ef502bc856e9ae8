package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jsctl/jsctl/event"
)

// Redrive messages go to subjects only their group's consumer takes.
const (
	redriveRoot  = "jsctl.redrive"
	headerCorrID = "Jsctl-Correlation-Id"
)

var _ event.Consumers = (*Queue)(nil)

// redriveSubject is where a redrive of an event for one group is published.
func (q *Queue) redriveSubject(group, eventType string) string {
	return redriveRoot + "." + q.Stream + "." + group + "." + eventType
}

// streamSubjects are the stream's subjects: events and redrives.
func (q *Queue) streamSubjects() []string {
	return []string{q.Prefix + ".>", redriveRoot + "." + q.Stream + ".>"}
}

// EnsureGroup implements event.Consumers: a durable pull consumer with
// explicit ack, starting after g.StartSequence, with ack sampling at 100% so
// that acks by native clients are reported too.
func (q *Queue) EnsureGroup(ctx context.Context, g event.Group) error {
	filters := make([]string, 0, len(g.Filters)+1)
	if len(g.Filters) == 0 {
		filters = append(filters, q.Prefix+".>")
	}
	for _, f := range g.Filters {
		filters = append(filters, q.Subject(f))
	}
	filters = append(filters, q.redriveSubject(g.Name, ">"))
	cfg := jetstream.ConsumerConfig{
		Durable:         g.Name,
		Description:     "jsctl consumer group " + g.Name,
		DeliverPolicy:   jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:     g.StartSequence + 1,
		AckPolicy:       jetstream.AckExplicitPolicy,
		AckWait:         g.AckWait,
		MaxDeliver:      g.MaxDeliveries,
		BackOff:         g.Backoff,
		MaxAckPending:   g.MaxAckPending,
		FilterSubjects:  filters,
		SampleFrequency: "100%",
	}
	if len(g.Backoff) > 0 {
		cfg.AckWait = g.Backoff[0]
	}
	if _, err := q.js.CreateOrUpdateConsumer(ctx, q.Stream, cfg); err != nil {
		return fmt.Errorf("consumer %s: %w", g.Name, err)
	}
	return nil
}

// Fetch implements event.Consumers. It waits up to a second for the batch.
func (q *Queue) Fetch(ctx context.Context, group string, n int, deliver func(*event.Delivery)) error {
	c, err := q.consumer(ctx, group)
	if err != nil {
		return err
	}
	// A fetch tied to ctx: when the subscriber goes away, the client drops
	// the pull request's inbox and JetStream, seeing no interest, delivers
	// nothing more to it.
	fctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	batch, err := c.Fetch(n, jetstream.FetchContext(fctx))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("fetch from group %s: %w", group, err)
	}
	for m := range batch.Messages() {
		d, err := q.delivery(group, m)
		if err != nil {
			return err
		}
		deliver(d)
	}
	if err := batch.Error(); err != nil && ctx.Err() == nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("fetch from group %s: %w", group, err)
	}
	return nil
}

// consumer returns the group's consumer handle, cached.
func (q *Queue) consumer(ctx context.Context, group string) (jetstream.Consumer, error) {
	q.consMu.Lock()
	defer q.consMu.Unlock()
	if c, ok := q.consumers[group]; ok {
		return c, nil
	}
	c, err := q.js.Consumer(ctx, q.Stream, group)
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", group, err)
	}
	if q.consumers == nil {
		q.consumers = map[string]jetstream.Consumer{}
	}
	q.consumers[group] = c
	return c, nil
}

// delivery turns a message into a Delivery: the event's ID from its msg-id
// (or, for a redrive, its header) and its type from the subject.
func (q *Queue) delivery(group string, m jetstream.Msg) (*event.Delivery, error) {
	meta, err := m.Metadata()
	if err != nil {
		return nil, fmt.Errorf("message metadata: %w", err)
	}
	d := &event.Delivery{
		Payload:    m.Data(),
		Group:      group,
		Sequence:   meta.Sequence.Stream,
		Deliveries: uint32(meta.NumDelivered),
		Settler:    settler{m: m, q: q, group: group, seq: meta.Sequence.Stream},
	}
	subject := m.Subject()
	idHeader := jetstream.MsgIDHeader
	if rest, ok := strings.CutPrefix(subject, q.redriveSubject(group, "")); ok {
		d.Type, idHeader = rest, headerCorrID
	} else {
		d.Type = strings.TrimPrefix(subject, q.Prefix+".")
	}
	d.ID, _ = event.ParseID(m.Headers().Get(idHeader))
	for k, v := range m.Headers() {
		if strings.HasPrefix(k, "Nats-") || strings.HasPrefix(k, "Jsctl-") || len(v) == 0 {
			continue
		}
		if d.Headers == nil {
			d.Headers = map[string]string{}
		}
		d.Headers[k] = v[0]
	}
	return d, nil
}

// settler settles a delivery with JetStream.
type settler struct {
	m     jetstream.Msg
	q     *Queue
	group string
	seq   uint64
}

// Ack acknowledges without waiting for JetStream's reply, and remembers the
// ack so that Advisories drops its report.
func (s settler) Ack() error {
	s.q.selfAcked.add(s.group, s.seq)
	if err := s.m.Ack(); err != nil {
		s.q.selfAcked.take(s.group, s.seq)
		return err
	}
	return nil
}

func (s settler) Nak(delay time.Duration) error { return s.m.NakWithDelay(delay) }
func (s settler) InProgress() error             { return s.m.InProgress() }
func (s settler) Terminate(reason string) error { return s.m.TermWithReason(reason) }

// Redrive implements event.Consumers.
func (q *Queue) Redrive(ctx context.Context, e *event.Event, group string, attempt int) (uint64, error) {
	m := &nats.Msg{Subject: q.redriveSubject(group, e.Type), Data: e.Payload, Header: nats.Header{}}
	for k, v := range e.Headers {
		m.Header[k] = []string{v}
	}
	m.Header.Set(headerCorrID, e.ID.String())
	ack, err := q.js.PublishMsg(ctx, m, jetstream.WithMsgID(fmt.Sprintf("%s.redrive.%s.%d", e.ID, group, attempt)))
	if err != nil {
		return 0, fmt.Errorf("publish redrive: %w", err)
	}
	q.observe(ack.Sequence)
	return ack.Sequence, nil
}

// ackMetricSequence finds the stream sequence in an ack metric without
// decoding the rest. ok is false if it is not where nats-server puts it.
func ackMetricSequence(data []byte) (seq uint64, ok bool) {
	const field = `"stream_seq":`
	i := bytes.Index(data, []byte(field))
	if i < 0 {
		return 0, false
	}
	digits := data[i+len(field):]
	n := 0
	for n < len(digits) && digits[n] >= '0' && digits[n] <= '9' {
		n++
	}
	seq, err := strconv.ParseUint(string(digits[:n]), 10, 64)
	return seq, err == nil
}

// ackSet remembers the messages jsctl acknowledged itself until their ack
// reports arrive. It is bounded: once ackSetGeneration acks wait for their
// reports, they become the previous generation and the one before is
// forgotten; a report that comes later than that is passed on like any
// other (recording it again does nothing).
type ackSet struct {
	mu        sync.Mutex
	cur, prev map[ackKey]struct{}
}

type ackKey struct {
	group string
	seq   uint64
}

const ackSetGeneration = 16384

func (a *ackSet) add(group string, seq uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur == nil || len(a.cur) >= ackSetGeneration {
		a.prev, a.cur = a.cur, make(map[ackKey]struct{})
	}
	a.cur[ackKey{group, seq}] = struct{}{}
}

// take reports whether the ack was made through a settler, and forgets it.
func (a *ackSet) take(group string, seq uint64) bool {
	k := ackKey{group, seq}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.cur[k]; ok {
		delete(a.cur, k)
		return true
	}
	if _, ok := a.prev[k]; ok {
		delete(a.prev, k)
		return true
	}
	return false
}

// Advisory subjects, per stream and consumer.
const (
	subjAckMetric     = "$JS.EVENT.METRIC.CONSUMER.ACK"
	subjNaked         = "$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED"
	subjTerminated    = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED"
	subjMaxDeliveries = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
)

// advisory holds the fields jsctl reads from those messages.
type advisory struct {
	Consumer   string    `json:"consumer"`
	StreamSeq  uint64    `json:"stream_seq"`
	Deliveries uint64    `json:"deliveries"`
	Reason     string    `json:"reason"`
	Time       time.Time `json:"timestamp"`
}

// Advisories implements event.Consumers.
func (q *Queue) Advisories(ctx context.Context, fn func(event.SeqUpdate)) error {
	outcomes := map[string]event.Outcome{
		subjAckMetric: event.OutcomeAcked, subjNaked: event.OutcomeNaked,
		subjTerminated: event.OutcomeTerminated, subjMaxDeliveries: event.OutcomeExhausted,
	}
	ch := make(chan *nats.Msg, 65536)
	var subs []*nats.Subscription
	defer func() {
		for _, s := range subs {
			s.Unsubscribe()
		}
	}()
	for prefix := range outcomes {
		s, err := q.nc.ChanSubscribe(prefix+"."+q.Stream+".*", ch)
		if err != nil {
			return fmt.Errorf("subscribe to %s: %w", prefix, err)
		}
		s.SetPendingLimits(-1, -1)
		subs = append(subs, s)
	}
	if err := q.nc.Flush(); err != nil {
		return fmt.Errorf("subscribe to advisories: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			dot := strings.LastIndexByte(m.Subject, '.')
			prefix := m.Subject[:strings.LastIndexByte(m.Subject[:dot], '.')]
			if prefix == subjAckMetric {
				// Most acks are jsctl's own, recorded already: drop their
				// reports before decoding them.
				if seq, ok := ackMetricSequence(m.Data); ok && q.selfAcked.take(m.Subject[dot+1:], seq) {
					continue
				}
			}
			var a advisory
			if err := json.Unmarshal(m.Data, &a); err != nil || a.StreamSeq == 0 {
				continue
			}
			u := event.SeqUpdate{Sequence: a.StreamSeq, Group: a.Consumer, Outcome: outcomes[prefix], Deliveries: uint32(a.Deliveries), Reason: a.Reason, Time: a.Time}
			if u.Time.IsZero() {
				u.Time = time.Now()
			}
			if u.Outcome == event.OutcomeExhausted {
				u.Reason = fmt.Sprintf("max deliveries (%d) reached", a.Deliveries)
			}
			fn(u)
		}
	}
}
