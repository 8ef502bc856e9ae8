package event

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Ledger is the durable record of events and their statuses. Implemented by
// boltstore.Store.
type Ledger interface {
	// AppendBatch makes each event durable (written and fsynced) with status
	// ACCEPTED and returns it with Created set, waiting once for the commits
	// that hold them; results are in the order of es. floor is the stream's
	// last sequence before the events were appended; recovery scans the
	// stream from there.
	//
	// If an event's IdempotencyKey names a live event, nothing is stored for
	// it and its result is that event with its payload and Created false, or
	// an error wrapping ErrConflict when the bodies differ. An error wrapping
	// ErrFull means nothing was stored for that event.
	AppendBatch(es []*Event, floor uint64) []AppendResult

	// MarkPublished records that the event is in the stream at seq. It does not
	// wait: the mark is written with a later group commit, and Get sees it at
	// once. Marking an event that is already published does nothing.
	MarkPublished(id ID, seq uint64, reason string)

	// Get returns the event with its history, and its payload if withPayload.
	// It returns an error wrapping ErrNotFound for an unknown ID, or one the
	// ledger removed by retention (its message then says it expired).
	Get(id ID, withPayload bool) (*Event, error)

	// Unpublished returns the events still ACCEPTED, oldest first, not counting
	// those with a mark waiting to be committed.
	Unpublished() ([]Pending, error)

	// PublishedAfter returns the events marked published at a sequence above seq.
	PublishedAfter(seq uint64) ([]Pending, error)

	GroupLedger
}

// AppendResult is one event's outcome in Ledger.AppendBatch.
type AppendResult struct {
	Event   *Event
	Created bool
	Err     error
}

// Pending names an event that recovery may have to publish again.
type Pending struct {
	ID       ID
	Floor    uint64 // stream's last sequence before the event was appended
	Sequence uint64 // sequence it was marked with, if any
}

// Queue is the delivery engine (JetStream). Implemented by embedded.Queue.
type Queue interface {
	// PublishAsync starts publishing e with its ID as the message ID, so that
	// publishing the same event twice stores it once (within the stream's
	// duplicate window).
	PublishAsync(e *Event) (Publication, error)

	// LastSequence returns a sequence the stream is known to have reached: at
	// least every sequence acknowledged so far.
	LastSequence() uint64

	// Sequences returns the message ID and sequence of every message after the
	// given sequence, up to the stream's end.
	Sequences(ctx context.Context, after uint64) (map[ID]uint64, error)
}

// Publication is a publish waiting for its acknowledgement.
type Publication interface {
	// Wait returns the stream sequence once the stream has acknowledged the
	// message, or an error. It can be called again after ctx expired.
	Wait(ctx context.Context) (uint64, error)
}

// Pipeline turns requests into acknowledged events: validate, append to the
// ledger (group-committed and fsynced), publish to the queue, mark published.
// Set the exported fields before use.
type Pipeline struct {
	Ledger    Ledger
	Queue     Queue
	Consumers Consumers
	Limits    Limits // default DefaultLimits()
	Logger    *slog.Logger

	// PublishTimeout bounds how long a publish keeps going after the client
	// gave up waiting for it. Default 30s.
	PublishTimeout time.Duration

	// OnAccepted, if set, is told of every event made durable in the ledger;
	// OnPublished of every acknowledged one and how long its NewEvent took
	// (for metrics). They must not block.
	OnAccepted  func(eventType string)
	OnPublished func(e *Event, took time.Duration)

	// Now and NewID default to time.Now and NewID; tests replace them.
	Now   func() time.Time
	NewID func() (ID, error)

	kick    chan struct{}
	groupMu sync.Mutex // serializes group creation
}

// NewPipeline returns a Pipeline with defaults set.
func NewPipeline(l Ledger, q Queue, c Consumers) *Pipeline {
	return &Pipeline{
		Ledger:         l,
		Queue:          q,
		Consumers:      c,
		Limits:         DefaultLimits(),
		Logger:         slog.Default(),
		PublishTimeout: 30 * time.Second,
		Now:            time.Now,
		NewID:          NewID,
		kick:           make(chan struct{}, 1),
	}
}

// Publish validates e, stores it durably and publishes it. On success the
// returned event is PUBLISHED with its stream sequence: the ack. e's Type,
// Payload, Headers and IdempotencyKey are used; the rest is set here.
//
// Errors: ErrInvalid, ErrConflict, ErrFull (nothing stored); ErrUnavailable
// or a context error (stored, and published later: retry with the same
// idempotency key to learn the outcome).
func (p *Pipeline) Publish(ctx context.Context, e *Event) (*Event, error) {
	r := p.StartBatch([]*Event{e}).Wait(ctx)[0]
	return r.Event, r.Err
}

// PublishResult is one event's outcome in a Batch: what Publish returns.
type PublishResult struct {
	Event *Event
	Err   error
}

// Batch is events on their way through Publish together: stored in the
// ledger and handed to the queue, waiting for their acknowledgements.
type Batch struct {
	p       *Pipeline
	results []PublishResult
	waiting []inflight
	start   time.Time
}

type inflight struct {
	i   int // index in results
	e   *Event
	pub Publication
}

// StartBatch does the first half of Publish for each event, together:
// validate, append to the ledger (one wait for the commits), and start every
// publish. It returns once the events are durable and their publishes are
// started, in the order of es; Wait finishes them. Batches started one
// after another are stored and published in that order, which is how a
// PublishEvents stream keeps its events in request order.
func (p *Pipeline) StartBatch(es []*Event) *Batch {
	b := &Batch{p: p, results: make([]PublishResult, len(es)), start: p.Now()}
	valid := make([]*Event, 0, len(es))
	at := make([]int, 0, len(es)) // valid[j] is es[at[j]]
	for i, e := range es {
		if err := p.Limits.Check(e); err != nil {
			b.results[i].Err = err
			continue
		}
		id, err := p.NewID()
		if err != nil {
			b.results[i].Err = fmt.Errorf("new id: %w", err)
			continue
		}
		e.ID, e.CreatedAt, e.Status, e.Sequence = id, p.Now(), StatusAccepted, 0
		valid, at = append(valid, e), append(at, i)
	}
	if len(valid) == 0 {
		return b
	}
	b.waiting = make([]inflight, 0, len(valid))
	for j, r := range p.Ledger.AppendBatch(valid, p.Queue.LastSequence()) {
		i := at[j]
		if r.Err != nil {
			b.results[i].Err = r.Err
			continue
		}
		failpoint("after-ledger-commit")
		if r.Created && p.OnAccepted != nil {
			p.OnAccepted(r.Event.Type)
		}
		if !r.Created && r.Event.Status != StatusAccepted {
			r.Event.Payload = nil
			b.results[i].Event = r.Event // an idempotent retry of a published event
			continue
		}
		pub, err := p.Queue.PublishAsync(r.Event)
		if err != nil {
			b.results[i].Err = p.notPublished(r.Event.ID, err)
			continue
		}
		b.waiting = append(b.waiting, inflight{i, r.Event, pub})
	}
	return b
}

// Wait waits for the batch's acknowledgements, marks the events PUBLISHED
// and returns each event's outcome, in the order given to StartBatch.
func (b *Batch) Wait(ctx context.Context) []PublishResult {
	p := b.p
	for _, w := range b.waiting {
		e, err := p.awaitPublished(ctx, w.e, w.pub)
		b.results[w.i] = PublishResult{Event: e, Err: err}
		if err == nil && p.OnPublished != nil {
			p.OnPublished(e, p.Now().Sub(b.start))
		}
	}
	b.waiting = nil
	return b.results
}

// Event returns the stored event; see Ledger.Get.
func (p *Pipeline) Event(id ID, withPayload bool) (*Event, error) {
	return p.Ledger.Get(id, withPayload)
}

// awaitPublished waits for e's PubAck and marks it PUBLISHED.
func (p *Pipeline) awaitPublished(ctx context.Context, e *Event, pub Publication) (*Event, error) {
	seq, err := pub.Wait(ctx)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// The client gave up; the event is stored, so finish the publish
			// for it in the background.
			go p.finish(e.ID, pub)
			return nil, ctx.Err()
		}
		return nil, p.notPublished(e.ID, err)
	}
	failpoint("after-puback")
	p.Ledger.MarkPublished(e.ID, seq, "")
	failpoint("after-mark")
	e.Status, e.Sequence, e.Payload = StatusPublished, seq, nil
	return e, nil
}

func (p *Pipeline) finish(id ID, pub Publication) {
	ctx, cancel := context.WithTimeout(context.Background(), p.PublishTimeout)
	defer cancel()
	seq, err := pub.Wait(ctx)
	if err != nil {
		p.Logger.Warn("publish after client left failed; will retry", "correlation_id", id.String(), "err", err)
		p.requestRepublish()
		return
	}
	p.Ledger.MarkPublished(id, seq, "")
}

// notPublished reports a stored event whose publish failed and schedules a
// retry of all unpublished events.
func (p *Pipeline) notPublished(id ID, cause error) error {
	p.Logger.Warn("publish failed; event stays ACCEPTED and will be retried", "correlation_id", id.String(), "err", cause)
	p.requestRepublish()
	return fmt.Errorf("%w: event %s is stored but JetStream did not acknowledge it (%v); it will be published when JetStream recovers; retry with the same idempotency_key to learn the outcome", ErrUnavailable, id, cause)
}

func (p *Pipeline) requestRepublish() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// RepublishRequested fires when a publish failed and Republish should run.
func (p *Pipeline) RepublishRequested() <-chan struct{} { return p.kick }

// Recovery counts what Recover found.
type Recovery struct {
	Found       int // ACCEPTED events already in the stream, now marked
	Republished int // ACCEPTED events published again
	LostTail    int // PUBLISHED events the stream had lost, published again
}

// Recover repairs what a crash or power loss left behind, before the API
// serves: events marked published at sequences the stream no longer has are
// published again, and every event still ACCEPTED is either found in the
// stream (and marked) or published again.
func (p *Pipeline) Recover(ctx context.Context) (Recovery, error) {
	var r Recovery
	last := p.Queue.LastSequence()
	lost, err := p.Ledger.PublishedAfter(last)
	if err != nil {
		return r, fmt.Errorf("find events beyond the stream's end: %w", err)
	}
	if len(lost) > 0 {
		p.Logger.Warn("stream lost its tail; publishing those events again", "events", len(lost), "stream_last_seq", last)
		reason := fmt.Sprintf("republished: stream ended at sequence %d after restart", last)
		if err := p.publishAll(ctx, lost, reason); err != nil {
			return r, err
		}
		r.LostTail = len(lost)
	}
	r.Found, r.Republished, err = p.Republish(ctx, time.Time{})
	return r, err
}

// Republish publishes the events still ACCEPTED that were created before the
// cutoff (all of them for a zero cutoff). Events the stream already holds are
// only marked. It returns how many were found and how many published.
func (p *Pipeline) Republish(ctx context.Context, cutoff time.Time) (found, published int, err error) {
	pending, err := p.Ledger.Unpublished()
	if err != nil {
		return 0, 0, fmt.Errorf("list unpublished events: %w", err)
	}
	if !cutoff.IsZero() {
		pending = slices.DeleteFunc(pending, func(pd Pending) bool { return !pd.ID.Time().Before(cutoff) })
	}
	if len(pending) == 0 {
		return 0, 0, nil
	}
	floor := pending[0].Floor
	for _, pd := range pending {
		floor = min(floor, pd.Floor)
	}
	inStream, err := p.Queue.Sequences(ctx, floor)
	if err != nil {
		return 0, 0, fmt.Errorf("scan stream from sequence %d: %w", floor+1, err)
	}
	var missing []Pending
	for _, pd := range pending {
		if seq, ok := inStream[pd.ID]; ok {
			p.Ledger.MarkPublished(pd.ID, seq, "recovered: found in stream")
			found++
			continue
		}
		missing = append(missing, pd)
	}
	if err := p.publishAll(ctx, missing, "republished"); err != nil {
		return found, 0, err
	}
	return found, len(missing), nil
}

// publishAll publishes the events with many acknowledgements in flight and
// marks each one as its acknowledgement arrives.
func (p *Pipeline) publishAll(ctx context.Context, pending []Pending, reason string) error {
	const window = 1024
	type inflight struct {
		id  ID
		pub Publication
	}
	var errs []error
	wait := func(batch []inflight) {
		for _, f := range batch {
			seq, err := f.pub.Wait(ctx)
			if err != nil {
				errs = append(errs, fmt.Errorf("event %s: %w", f.id, err))
				continue
			}
			p.Ledger.MarkPublished(f.id, seq, reason)
		}
	}
	batch := make([]inflight, 0, window)
	for _, pd := range pending {
		e, err := p.Ledger.Get(pd.ID, true)
		if errors.Is(err, ErrNotFound) {
			continue // removed by the ledger's retention since it was listed
		}
		if err != nil {
			return fmt.Errorf("read event %s: %w", pd.ID, err)
		}
		pub, err := p.Queue.PublishAsync(e)
		if err != nil {
			errs = append(errs, fmt.Errorf("event %s: %w", pd.ID, err))
			continue
		}
		if batch = append(batch, inflight{pd.ID, pub}); len(batch) == window {
			wait(batch)
			batch = batch[:0]
		}
	}
	wait(batch)
	if len(errs) > 0 {
		return fmt.Errorf("%w: %d of %d events not published: %w", ErrUnavailable, len(errs), len(pending), errors.Join(errs[:min(len(errs), 3)]...))
	}
	return nil
}
