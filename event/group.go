package event

import (
	"fmt"
	"strings"
	"time"
)

// Group is a consumer group: a durable JetStream pull consumer with explicit
// ack. Every group gets every event its filters match (fan-out); the
// subscribers of one group share its events.
type Group struct {
	// Name is the durable consumer's name: letters, digits, '-' and '_'.
	Name string
	// Filters are event types with wildcards: '*' matches one token, '>' the
	// rest (order.>, *.created). Empty means every event.
	Filters []string
	// MaxDeliveries is how often an event is delivered before it fails.
	MaxDeliveries int
	// AckWait is how long a delivery may stay unsettled before it is
	// delivered again.
	AckWait time.Duration
	// Backoff, if set, replaces AckWait per delivery: delivery n may stay
	// unsettled for Backoff[n-1] before it is delivered again, and a nak of
	// delivery n without a delay of its own is delivered again after
	// Backoff[n-1]. The last entry repeats. JetStream requires
	// MaxDeliveries >= len(Backoff).
	Backoff []time.Duration
	// MaxAckPending caps unsettled deliveries across the group.
	MaxAckPending int
	// StartSequence is the stream's last sequence when the group was created:
	// the group is interested in the matching events after it.
	StartSequence uint64
	CreatedAt     time.Time
}

// DefaultGroup returns a group with jsctl's defaults: every event, 5
// deliveries, 30s ack wait, no backoff, 1000 unsettled.
func DefaultGroup(name string) Group {
	return Group{
		Name:          name,
		MaxDeliveries: 5,
		AckWait:       30 * time.Second,
		MaxAckPending: 1000,
	}
}

// Check returns an error wrapping ErrInvalid if g is not a valid group.
func (g *Group) Check(l Limits) error {
	if g.Name == "" || len(g.Name) > 64 {
		return fmt.Errorf("%w: group name must be 1 to 64 characters", ErrInvalid)
	}
	for i := 0; i < len(g.Name); i++ {
		if !typeChar(g.Name[i]) {
			return fmt.Errorf("%w: group name %q has %q; allowed are letters, digits, '-' and '_'", ErrInvalid, g.Name, rune(g.Name[i]))
		}
	}
	for _, f := range g.Filters {
		if err := l.CheckFilter(f); err != nil {
			return err
		}
	}
	switch {
	case g.MaxDeliveries < 1:
		return fmt.Errorf("%w: group %s: max deliveries must be at least 1", ErrInvalid, g.Name)
	case g.AckWait < 100*time.Millisecond:
		return fmt.Errorf("%w: group %s: ack wait must be at least 100ms", ErrInvalid, g.Name)
	case g.MaxAckPending < 1:
		return fmt.Errorf("%w: group %s: max ack pending must be at least 1", ErrInvalid, g.Name)
	case g.MaxDeliveries < len(g.Backoff):
		// JetStream refuses more backoff steps than deliveries.
		return fmt.Errorf("%w: group %s: max deliveries (%d) must be at least the number of backoff steps (%d)", ErrInvalid, g.Name, g.MaxDeliveries, len(g.Backoff))
	}
	for _, d := range g.Backoff {
		if d <= 0 {
			return fmt.Errorf("%w: group %s: backoff steps must be positive", ErrInvalid, g.Name)
		}
	}
	return nil
}

// CheckFilter returns an error wrapping ErrInvalid unless f is an event type
// in which whole tokens may be '*', and the last token may be '>'.
func (l Limits) CheckFilter(f string) error {
	tokens := strings.Split(f, ".")
	concrete := make([]string, len(tokens))
	for i, t := range tokens {
		switch {
		case t == "*":
			concrete[i] = "x"
		case t == ">" && i == len(tokens)-1:
			concrete[i] = "x"
		default:
			concrete[i] = t
		}
	}
	if err := l.CheckType(strings.Join(concrete, ".")); err != nil {
		return fmt.Errorf("%w: filter %q: tokens are names, '*', or a final '>'", ErrInvalid, f)
	}
	return nil
}

// Matches reports whether the group's filters match the event type.
func (g *Group) Matches(eventType string) bool {
	if len(g.Filters) == 0 {
		return true
	}
	for _, f := range g.Filters {
		if MatchType(f, eventType) {
			return true
		}
	}
	return false
}

// Interested reports whether the group takes part in the event's status:
// its filters match and it existed when the event was published.
func (g *Group) Interested(eventType string, seq uint64) bool {
	return seq > g.StartSequence && g.Matches(eventType)
}

// MatchType reports whether filter (with '*' and '>' wildcards) matches the
// event type t.
func MatchType(filter, t string) bool {
	for {
		ft, frest, fmore := strings.Cut(filter, ".")
		tt, trest, tmore := strings.Cut(t, ".")
		switch {
		case ft == ">":
			return true
		case ft != "*" && ft != tt:
			return false
		case !fmore || !tmore:
			return fmore == tmore
		}
		filter, t = frest, trest
	}
}

// BackoffFor returns the delay before redelivering after the given delivery
// (1 for the first) under the group's backoff list, or 0 without one.
func (g *Group) BackoffFor(deliveries int) time.Duration {
	if len(g.Backoff) == 0 || deliveries < 1 {
		return 0
	}
	return g.Backoff[min(deliveries-1, len(g.Backoff)-1)]
}

// Outcome is something a consumer group did with an event.
type Outcome uint8

// Outcomes, as reported by subscribers or JetStream's advisories.
const (
	OutcomeDelivered  Outcome = iota + 1 // handed to a subscriber
	OutcomeAcked                         // processed
	OutcomeNaked                         // given back, to be delivered again
	OutcomeTerminated                    // failed for good by the subscriber
	OutcomeExhausted                     // max deliveries reached
	OutcomeRedriven                      // sent again to the group after failing
)

// GroupUpdate records one outcome of an event in a group.
type GroupUpdate struct {
	ID         ID
	Group      string
	Outcome    Outcome
	Deliveries uint32
	Reason     string
	Sequence   uint64 // stream sequence of the message (redrives get a new one)
	Time       time.Time
}

// Summarize returns the overall status of an event from the statuses of the
// groups interested in it: FAILED if any failed, PROCESSED if all processed,
// DELIVERED if any delivery happened, else PUBLISHED (or ACCEPTED before).
func Summarize(current Status, groups []GroupStatus) Status {
	if current < StatusPublished || len(groups) == 0 {
		return current
	}
	processed, delivered := 0, false
	for _, g := range groups {
		switch g.Status {
		case StatusFailed:
			return StatusFailed
		case StatusProcessed:
			processed++
			delivered = true
		case StatusDelivered:
			delivered = true
		}
	}
	switch {
	case processed == len(groups):
		return StatusProcessed
	case delivered:
		return StatusDelivered
	}
	return StatusPublished
}
