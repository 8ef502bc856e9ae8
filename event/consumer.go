package event

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrPrecondition is returned when a request is valid but does not fit the
// current state: settling a delivery that is unknown or already settled,
// redriving an event that has not failed, reopening a group with other filters.
var ErrPrecondition = errors.New("failed precondition")

// Delivery is one event handed to a subscriber of a consumer group.
type Delivery struct {
	ID         ID // zero for a message that is not a jsctl event
	Type       string
	Payload    []byte
	Headers    map[string]string
	Group      string
	Sequence   uint64 // stream sequence of the message
	Deliveries uint32 // 1 for the first delivery
	Settler    Settler
}

// Settler settles one delivery with JetStream. None of its methods waits for
// JetStream's confirmation: a settle JetStream never receives shows as a
// redelivery.
type Settler interface {
	// Ack acknowledges. JetStream's report of this ack is not passed to
	// Consumers.Advisories: the caller has recorded the outcome already.
	Ack() error
	// Nak asks for redelivery after delay.
	Nak(delay time.Duration) error
	// InProgress extends the ack wait.
	InProgress() error
	// Terminate stops redelivery for good.
	Terminate(reason string) error
}

// SeqUpdate is a consumer group's outcome for the message at a stream
// sequence, as JetStream's advisories and ack metrics report it.
type SeqUpdate struct {
	Sequence   uint64
	Group      string
	Outcome    Outcome
	Deliveries uint32
	Reason     string
	Time       time.Time
}

// Consumers runs consumer groups on the queue. Implemented by embedded.Queue.
type Consumers interface {
	// EnsureGroup creates the group's durable consumer, or updates its
	// settings, starting after g.StartSequence.
	EnsureGroup(ctx context.Context, g Group) error
	// Fetch asks for up to n deliveries of the group and calls deliver for
	// each as it arrives; it returns when n arrived or after a short wait.
	Fetch(ctx context.Context, group string, n int, deliver func(*Delivery)) error
	// Redrive publishes e again so that only the group receives it, and
	// returns the new message's sequence.
	Redrive(ctx context.Context, e *Event, group string, attempt int) (uint64, error)
	// Advisories calls fn for every ack, nak, termination and max-deliveries
	// advisory of the stream's consumers until ctx is done, except the ack
	// reports of acks made through a Settler.
	Advisories(ctx context.Context, fn func(SeqUpdate)) error
}

// GroupLedger is what the ledger keeps about consumer groups and their
// outcomes. Implemented by boltstore.Store.
type GroupLedger interface {
	SaveGroup(g Group) error
	Group(name string) (Group, bool)
	Groups() []Group
	// RecordGroup queues an outcome, written with the next commit.
	RecordGroup(u GroupUpdate)
	// RecordGroupSync records outcomes, in one commit, and returns once they
	// are durable.
	RecordGroupSync(ctx context.Context, us ...GroupUpdate) error
	// RecordBySequence queues an outcome for the event whose message has
	// the sequence; unknown sequences are ignored.
	RecordBySequence(u SeqUpdate)
	// Watch signals every change of the event until stopped.
	Watch(id ID) (<-chan struct{}, func())
	// List returns events matching q, and the token of the next page.
	List(q ListQuery) ([]*Event, string, error)
}

// ListQuery selects events for ListEvents.
type ListQuery struct {
	Status     Status // zero for any
	TypePrefix string
	Since      time.Time // zero for no bound
	Until      time.Time // zero for no bound
	Limit      int
	PageToken  string
}

// OpenGroup returns the named group, creating it with filters and default
// settings if it does not exist. Reopening it with other filters fails with
// ErrPrecondition.
func (p *Pipeline) OpenGroup(ctx context.Context, name string, filters []string) (Group, error) {
	p.groupMu.Lock()
	defer p.groupMu.Unlock()
	if g, ok := p.Ledger.Group(name); ok {
		if len(filters) > 0 && !slices.Equal(normalized(filters), normalized(g.Filters)) {
			return Group{}, fmt.Errorf("%w: group %s exists with filters %v, not %v", ErrPrecondition, name, g.Filters, filters)
		}
		return g, nil
	}
	g := DefaultGroup(name)
	g.Filters = filters
	return g, p.SaveGroup(ctx, &g)
}

// SaveGroup creates or updates a group. A new group starts after the stream's
// current end; an existing one keeps its start.
func (p *Pipeline) SaveGroup(ctx context.Context, g *Group) error {
	if err := g.Check(p.Limits); err != nil {
		return err
	}
	if old, ok := p.Ledger.Group(g.Name); ok {
		g.StartSequence, g.CreatedAt = old.StartSequence, old.CreatedAt
	} else {
		g.StartSequence, g.CreatedAt = p.Queue.LastSequence(), p.Now()
	}
	// Ledger first: if the consumer cannot be created now, the next attempt
	// creates it with the same start.
	if err := p.Ledger.SaveGroup(*g); err != nil {
		return fmt.Errorf("save group %s: %w", g.Name, err)
	}
	if err := p.Consumers.EnsureGroup(ctx, *g); err != nil {
		return fmt.Errorf("consumer for group %s: %w", g.Name, err)
	}
	return nil
}

func normalized(f []string) []string {
	out := slices.Clone(f)
	slices.Sort(out)
	return slices.Compact(out)
}

// Fetch hands out up to n deliveries of the group, each to deliver as it
// arrives, and records them as DELIVERED. A redelivery of a message the
// ledger already holds as settled in the group (its settle never reached
// JetStream) is settled again here and not handed out.
func (p *Pipeline) Fetch(ctx context.Context, group string, n int, deliver func(*Delivery)) error {
	return p.Consumers.Fetch(ctx, group, n, func(d *Delivery) {
		if d.ID != (ID{}) {
			if d.Deliveries > 1 && p.settleAgain(d) {
				return
			}
			p.Ledger.RecordGroup(GroupUpdate{ID: d.ID, Group: group, Outcome: OutcomeDelivered, Deliveries: d.Deliveries, Sequence: d.Sequence, Time: p.Now()})
		}
		deliver(d)
	})
}

// settleAgain settles d with JetStream as the ledger has it, if the ledger
// holds this message as PROCESSED or FAILED in d's group, and reports
// whether it did. Fetch asks only for redeliveries, so a first delivery
// costs no read. (After a crash JetStream may have lost its count and
// deliver a settled message as a first delivery; the subscriber then sees
// it once more, and its settle changes nothing in the ledger.)
func (p *Pipeline) settleAgain(d *Delivery) bool {
	e, err := p.Ledger.Get(d.ID, false)
	if err != nil {
		return false // hand it out; the subscriber's settle is recorded as usual
	}
	i := slices.IndexFunc(e.Groups, func(g GroupStatus) bool { return g.Group == d.Group })
	if i < 0 || e.Groups[i].Sequence != d.Sequence {
		return false
	}
	switch g := e.Groups[i]; g.Status {
	case StatusProcessed:
		err = d.Settler.Ack()
	case StatusFailed:
		err = d.Settler.Terminate(g.LastReason)
	default:
		return false
	}
	if err != nil {
		p.Logger.Warn("settling a redelivered message again failed; it will be delivered again", "group", d.Group, "stream_seq", d.Sequence, "err", err)
	}
	return true
}

// Ack records the deliveries as processed, durably and in one commit, and
// then acknowledges them to JetStream without waiting for its confirmation.
// If the process dies in between, or an acknowledgement is lost, JetStream
// delivers the message again and Fetch acknowledges it then; the status
// already says PROCESSED. The error is the ledger's: once the outcome is
// durable, the ack has succeeded.
func (p *Pipeline) Ack(ctx context.Context, ds ...*Delivery) error {
	us := make([]GroupUpdate, 0, len(ds))
	now := p.Now()
	for _, d := range ds {
		if d.ID != (ID{}) {
			us = append(us, GroupUpdate{ID: d.ID, Group: d.Group, Outcome: OutcomeAcked, Deliveries: d.Deliveries, Sequence: d.Sequence, Time: now})
		}
	}
	if err := p.Ledger.RecordGroupSync(ctx, us...); err != nil {
		return err
	}
	failpoint("after-ack-record")
	for _, d := range ds {
		if err := d.Settler.Ack(); err != nil {
			p.Logger.Warn("ack to JetStream failed; the message will be delivered again and acknowledged then", "group", d.Group, "stream_seq", d.Sequence, "err", err)
		}
	}
	return nil
}

// Nak gives the delivery back. Without a delay of its own it is delivered
// again after the group's backoff for this delivery. The last allowed
// delivery fails instead.
func (p *Pipeline) Nak(ctx context.Context, d *Delivery, delay time.Duration, reason string) error {
	g, _ := p.Ledger.Group(d.Group)
	if g.MaxDeliveries > 0 && int(d.Deliveries) >= g.MaxDeliveries {
		why := fmt.Sprintf("max deliveries (%d) reached", g.MaxDeliveries)
		if reason != "" {
			why += "; last nak: " + reason
		}
		if err := p.recordSync(ctx, d, OutcomeExhausted, why); err != nil {
			return err
		}
		return d.Settler.Terminate(why)
	}
	if delay <= 0 {
		delay = g.BackoffFor(int(d.Deliveries))
	}
	if d.ID != (ID{}) {
		p.Ledger.RecordGroup(GroupUpdate{ID: d.ID, Group: d.Group, Outcome: OutcomeNaked, Deliveries: d.Deliveries, Reason: reason, Sequence: d.Sequence, Time: p.Now()})
	}
	return d.Settler.Nak(delay)
}

// Terminate records the delivery as failed (durably) and stops its
// redelivery.
func (p *Pipeline) Terminate(ctx context.Context, d *Delivery, reason string) error {
	if reason == "" {
		reason = "terminated by subscriber"
	}
	if err := p.recordSync(ctx, d, OutcomeTerminated, reason); err != nil {
		return err
	}
	return d.Settler.Terminate(reason)
}

func (p *Pipeline) recordSync(ctx context.Context, d *Delivery, o Outcome, reason string) error {
	if d.ID == (ID{}) {
		return nil
	}
	return p.Ledger.RecordGroupSync(ctx, GroupUpdate{ID: d.ID, Group: d.Group, Outcome: o, Deliveries: d.Deliveries, Reason: reason, Sequence: d.Sequence, Time: p.Now()})
}

// Redrive sends a failed event again to the group it failed in (the only
// failed group, or the one named), with a fresh delivery count. Other groups
// do not see it again.
func (p *Pipeline) Redrive(ctx context.Context, id ID, group string) (*Event, uint64, error) {
	e, err := p.Ledger.Get(id, true)
	if err != nil {
		return nil, 0, err
	}
	var failed []string
	for _, g := range e.Groups {
		if g.Status == StatusFailed {
			failed = append(failed, g.Group)
		}
	}
	switch {
	case group == "" && len(failed) == 1:
		group = failed[0]
	case group == "" && len(failed) == 0:
		return nil, 0, fmt.Errorf("%w: event %s has not failed in any group (status %s)", ErrPrecondition, id, e.Status)
	case group == "":
		return nil, 0, fmt.Errorf("%w: event %s failed in groups %s; name one", ErrInvalid, id, strings.Join(failed, ", "))
	case !slices.Contains(failed, group):
		return nil, 0, fmt.Errorf("%w: event %s has not failed in group %s", ErrPrecondition, id, group)
	}
	attempt := 1
	for _, t := range e.History {
		if t.Group == group && strings.HasPrefix(t.Reason, "redrive") {
			attempt++
		}
	}
	seq, err := p.Consumers.Redrive(ctx, e, group, attempt)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: redrive %s: %v", ErrUnavailable, id, err)
	}
	err = p.Ledger.RecordGroupSync(ctx, GroupUpdate{
		ID: id, Group: group, Outcome: OutcomeRedriven, Sequence: seq, Time: p.Now(),
		Reason: fmt.Sprintf("redrive attempt %d as stream sequence %d", attempt, seq),
	})
	if err != nil {
		return nil, 0, err
	}
	e, err = p.Ledger.Get(id, false)
	return e, seq, err
}

// TrackAdvisories records what JetStream reports about the consumers, so
// that native NATS clients move statuses too. It runs until ctx is done.
func (p *Pipeline) TrackAdvisories(ctx context.Context) error {
	return p.Consumers.Advisories(ctx, p.Ledger.RecordBySequence)
}

// Watch signals every change of the event until stopped.
func (p *Pipeline) Watch(id ID) (<-chan struct{}, func()) { return p.Ledger.Watch(id) }

// List returns events matching q and the next page token.
func (p *Pipeline) List(q ListQuery) ([]*Event, string, error) {
	if q.Limit <= 0 || q.Limit > 1000 {
		q.Limit = 100
	}
	return p.Ledger.List(q)
}
