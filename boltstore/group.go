package boltstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/jsctl/jsctl/event"
)

// loadGroups reads every consumer group into memory.
func (s *Store) loadGroups() error {
	groups := map[string]event.Group{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGroups).ForEach(func(k, v []byte) error {
			g, err := decodeGroup(v)
			if err != nil {
				return fmt.Errorf("%w: group %s: %w", event.ErrCorrupt, k, err)
			}
			groups[g.Name] = g
			return nil
		})
	})
	s.groupMu.Lock()
	s.groups = groups
	s.groupMu.Unlock()
	return err
}

// SaveGroup stores g (created or changed) durably.
func (s *Store) SaveGroup(g event.Group) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGroups).Put([]byte(g.Name), encodeGroup(nil, &g))
	})
	if err != nil {
		return storageError(err)
	}
	s.groupMu.Lock()
	groups := maps.Clone(s.groups) // copy on write: writers hold snapshots
	groups[g.Name] = g
	s.groups = groups
	s.groupMu.Unlock()
	return nil
}

// Group returns the named group.
func (s *Store) Group(name string) (event.Group, bool) {
	s.groupMu.RLock()
	defer s.groupMu.RUnlock()
	g, ok := s.groups[name]
	return g, ok
}

// Groups returns every group, by name.
func (s *Store) Groups() []event.Group {
	s.groupMu.RLock()
	defer s.groupMu.RUnlock()
	out := make([]event.Group, 0, len(s.groups))
	for _, g := range s.groups {
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b event.Group) int { return cmpString(a.Name, b.Name) })
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *Store) groupSnapshot() map[string]event.Group {
	s.groupMu.RLock()
	defer s.groupMu.RUnlock()
	return s.groups // replaced, never mutated in place, under the lock
}

// RecordGroup queues an outcome of an event in a consumer group; it is
// committed with the next group commit.
func (s *Store) RecordGroup(u event.GroupUpdate) {
	s.enqueue(update{group: &u})
}

// RecordGroupSync records outcomes and returns once they are durable. The
// outcomes are queued together, so they share one commit.
func (s *Store) RecordGroupSync(ctx context.Context, us ...event.GroupUpdate) error {
	if len(us) == 0 {
		return nil
	}
	done := make(chan error, len(us)) // every update reports once
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return fmt.Errorf("%w: ledger is closing", event.ErrUnavailable)
	}
	s.markMu.Lock()
	for i := range us {
		s.updates = append(s.updates, update{group: &us[i], done: done})
	}
	s.markMu.Unlock()
	s.poke()
	s.closeMu.RUnlock()
	var first error
	for range us {
		select {
		case err := <-done:
			if first == nil {
				first = err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return first
}

// RecordBySequence implements event.GroupLedger.
func (s *Store) RecordBySequence(u event.SeqUpdate) {
	s.enqueue(update{bySeq: &u})
}

// bySeq finds the event of a message by its sequence and applies the
// outcome. Messages jsctl does not know, and redrive messages of another
// group, are ignored. It returns the event's ID, or zero.
func (w *writer) bySeq(u event.SeqUpdate) (ID, error) {
	v := w.sequences.Get(seqKey(u.Sequence))
	if len(v) < len(ID{}) {
		return ID{}, nil
	}
	id := ID(v[:16])
	if len(v) > 16 && string(v[16:]) != u.Group {
		return ID{}, nil
	}
	return id, w.group(event.GroupUpdate{ID: id, Group: u.Group, Outcome: u.Outcome, Deliveries: u.Deliveries, Reason: u.Reason, Sequence: u.Sequence, Time: u.Time})
}

// group applies a consumer group's outcome to an event's state.
func (w *writer) group(u event.GroupUpdate) error {
	if _, ok := w.groups[u.Group]; !ok {
		return nil // a consumer jsctl does not manage
	}
	body := w.events.Get(u.ID[:])
	if body == nil {
		return nil // removed since
	}
	var e event.Event
	if err := decodeBody(body, &e, false); err != nil {
		return fmt.Errorf("%w: event %s: %w", event.ErrCorrupt, u.ID, err)
	}
	st, _, err := w.readState(u.ID)
	if err != nil {
		return err
	}
	old := *st
	if st.Sequence == 0 && u.Outcome != event.OutcomeRedriven && u.Sequence != 0 {
		// Delivered before its PUBLISHED mark was written: the delivery
		// proves the publish.
		st.markPublished(mark{id: u.ID, seq: u.Sequence, at: u.Time, reason: "seen delivered"})
		if err := w.sequences.Put(seqKey(u.Sequence), u.ID[:]); err != nil {
			return err
		}
	}
	if g := w.groups[u.Group]; !g.Interested(e.Type, st.Sequence) && u.Outcome != event.OutcomeRedriven {
		return nil // the group does not take part in this event's status
	}
	if !st.applyGroup(u, interested(w.groups, e.Type, st.Sequence)) {
		if st.Sequence == old.Sequence {
			return nil
		}
	}
	if st.Status != old.Status {
		w.statusChanges = append(w.statusChanges, statusChange{eventType: e.Type, to: st.Status})
	}
	if u.Outcome == event.OutcomeRedriven {
		v := append(append([]byte{}, u.ID[:]...), u.Group...)
		if err := w.sequences.Put(seqKey(u.Sequence), v); err != nil {
			return err
		}
	}
	return w.putState(u.ID, &old, st)
}

// interested lists the groups that take part in an event's status.
func interested(groups map[string]event.Group, eventType string, seq uint64) []string {
	var names []string
	for name, g := range groups {
		if g.Interested(eventType, seq) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// applyGroup applies u and recomputes the overall status over the interested
// groups. It reports whether anything changed. Statuses only move forward,
// except that a redrive reopens a failed group.
func (st *state) applyGroup(u event.GroupUpdate, interestedGroups []string) bool {
	i := slices.IndexFunc(st.Groups, func(g event.GroupStatus) bool { return g.Group == u.Group })
	if i < 0 {
		st.Groups = append(st.Groups, event.GroupStatus{Group: u.Group, Status: event.StatusPublished, Sequence: st.Sequence})
		i = len(st.Groups) - 1
	}
	g := &st.Groups[i]
	if u.Sequence != 0 && g.Sequence != 0 && u.Sequence != g.Sequence && u.Outcome != event.OutcomeRedriven {
		return false // about an earlier message of the event (before a redrive)
	}
	from := g.Status
	reason := u.Reason
	switch u.Outcome {
	case event.OutcomeDelivered:
		if from.Terminal() || u.Deliveries <= g.Deliveries {
			return false
		}
		g.Status = event.StatusDelivered
	case event.OutcomeNaked:
		if from.Terminal() || (g.Deliveries == u.Deliveries && from == event.StatusDelivered && len(g.LastReason) >= 3 && g.LastReason[:3] == "nak") {
			return false
		}
		g.Status = event.StatusDelivered
		reason = "nak"
		if u.Reason != "" {
			reason += ": " + u.Reason
		}
	case event.OutcomeAcked:
		if from.Terminal() {
			return false
		}
		g.Status = event.StatusProcessed
	case event.OutcomeTerminated, event.OutcomeExhausted:
		if from.Terminal() {
			return false
		}
		g.Status = event.StatusFailed
	case event.OutcomeRedriven:
		if from != event.StatusFailed {
			return false
		}
		g.Status = event.StatusPublished
		g.Deliveries = 0
		g.Sequence = u.Sequence
	default:
		return false
	}
	if u.Outcome != event.OutcomeRedriven {
		g.Deliveries = max(g.Deliveries, u.Deliveries)
	}
	g.LastReason, g.UpdatedAt = reason, u.Time
	st.History = append(st.History, event.Transition{
		From: from, To: g.Status, Time: u.Time, Group: u.Group, Reason: reason, Deliveries: g.Deliveries, Sequence: u.Sequence,
	})
	overall := event.Summarize(st.Status, st.groupsIn(interestedGroups))
	if overall != st.Status {
		st.History = append(st.History, event.Transition{From: st.Status, To: overall, Time: u.Time, Reason: overallReason(overall, u.Group)})
		st.Status = overall
	}
	return true
}

// groupsIn returns the statuses of the named groups, PUBLISHED for those
// without one yet.
func (st *state) groupsIn(names []string) []event.GroupStatus {
	out := make([]event.GroupStatus, 0, len(names))
	for _, n := range names {
		i := slices.IndexFunc(st.Groups, func(g event.GroupStatus) bool { return g.Group == n })
		if i < 0 {
			out = append(out, event.GroupStatus{Group: n, Status: event.StatusPublished, Sequence: st.Sequence})
			continue
		}
		out = append(out, st.Groups[i])
	}
	return out
}

func overallReason(s event.Status, group string) string {
	switch s {
	case event.StatusProcessed:
		return "processed by every interested group"
	case event.StatusFailed:
		return "failed in group " + group
	}
	return ""
}

// encodeGroup and decodeGroup store a group's settings.
func encodeGroup(buf []byte, g *event.Group) []byte {
	buf = append(buf, 1) // version
	buf = appendString(buf, g.Name)
	buf = binary.AppendUvarint(buf, uint64(len(g.Filters)))
	for _, f := range g.Filters {
		buf = appendString(buf, f)
	}
	buf = binary.AppendUvarint(buf, uint64(g.MaxDeliveries))
	buf = binary.AppendVarint(buf, int64(g.AckWait))
	buf = binary.AppendUvarint(buf, uint64(len(g.Backoff)))
	for _, d := range g.Backoff {
		buf = binary.AppendVarint(buf, int64(d))
	}
	buf = binary.AppendUvarint(buf, uint64(g.MaxAckPending))
	buf = binary.AppendUvarint(buf, g.StartSequence)
	return binary.AppendVarint(buf, unixNano(g.CreatedAt))
}

func decodeGroup(b []byte) (event.Group, error) {
	d := decoder{b: b}
	if v := d.byte(); v != 1 {
		return event.Group{}, fmt.Errorf("group record version %d, want 1", v)
	}
	g := event.Group{Name: d.string()}
	for n := d.uvarint(); n > 0 && d.err == nil; n-- {
		g.Filters = append(g.Filters, d.string())
	}
	g.MaxDeliveries = int(d.uvarint())
	g.AckWait = time.Duration(d.varint())
	for n := d.uvarint(); n > 0 && d.err == nil; n-- {
		g.Backoff = append(g.Backoff, time.Duration(d.varint()))
	}
	g.MaxAckPending = int(d.uvarint())
	g.StartSequence = d.uvarint()
	g.CreatedAt = timeOf(d.varint())
	return g, d.err
}
