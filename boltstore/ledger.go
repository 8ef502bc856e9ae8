package boltstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/jsctl/jsctl/event"
)

// Append is AppendBatch for one event: it returns once the commit holding e
// is fsynced.
func (s *Store) Append(e *event.Event, floor uint64) (*event.Event, bool, error) {
	r := s.AppendBatch([]*event.Event{e}, floor)[0]
	return r.Event, r.Created, r.Err
}

// AppendBatch implements event.Ledger: one wait for the commits that hold
// the events (usually one).
func (s *Store) AppendBatch(es []*event.Event, floor uint64) []event.AppendResult {
	out := make([]event.AppendResult, len(es))
	reqs := make([]appendReq, len(es))
	done := make(chan struct{}, len(es))
	for i, e := range es {
		r := &reqs[i]
		r.ev, r.floor, r.done = e, floor, done
		r.body = encodeBody(make([]byte, 0, bodySize(e)), e)
		if e.IdempotencyKey != "" {
			r.hash = e.BodyHash()
		}
	}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		for i := range out {
			out[i].Err = fmt.Errorf("%w: ledger is closing", event.ErrUnavailable)
		}
		return out
	}
	for i := range reqs {
		s.appends <- &reqs[i]
	}
	s.closeMu.RUnlock()
	for range reqs {
		<-done
	}
	for i, r := range reqs {
		switch {
		case r.err != nil:
			out[i].Err = r.err
		case r.existing != nil:
			// Read it again: a mark may have been committed or made since the
			// committer read it.
			out[i].Event, out[i].Err = s.Get(*r.existing, true)
		default:
			out[i].Event, out[i].Created = es[i], true
		}
	}
	return out
}

// MarkPublished implements event.Ledger.
func (s *Store) MarkPublished(id ID, seq uint64, reason string) {
	m := mark{id: id, seq: seq, at: s.Now(), reason: reason}
	s.markMu.Lock()
	if cur, ok := s.marked[id]; ok && cur.seq == seq {
		s.markMu.Unlock()
		return
	}
	s.markMu.Unlock()
	s.enqueue(update{mark: &m})
	s.notify(id)
}

// PendingMarks returns how many marks are made but not yet committed.
func (s *Store) PendingMarks() int {
	s.markMu.Lock()
	defer s.markMu.Unlock()
	return len(s.marked)
}

func (s *Store) pendingMark(id ID) (mark, bool) {
	s.markMu.Lock()
	m, ok := s.marked[id]
	s.markMu.Unlock()
	return m, ok
}

// overlay applies a mark that is not committed yet.
func (s *Store) overlay(e *event.Event, m mark, ok bool) {
	if !ok || e.Sequence == m.seq {
		return
	}
	st := &state{Status: e.Status, Sequence: e.Sequence}
	st.markPublished(m)
	e.Status, e.Sequence = st.Status, st.Sequence
	e.History = append(e.History, st.History...)
}

// Get implements event.Ledger.
func (s *Store) Get(id ID, withPayload bool) (*event.Event, error) {
	// Take the pending mark before reading: a mark is always pending, committed,
	// or both, so one of the two reads sees it.
	m, marked := s.pendingMark(id)
	e := &event.Event{ID: id}
	err := s.db.View(func(tx *bolt.Tx) error {
		body := tx.Bucket(bucketEvents).Get(id[:])
		if body == nil {
			return notFound(tx, id)
		}
		if err := decodeBody(body, e, withPayload); err != nil {
			return fmt.Errorf("%w: event %s: %w", event.ErrCorrupt, id, err)
		}
		st, _, err := readState(tx.Bucket(bucketState), tx.Bucket(bucketByStatus), id)
		if err != nil {
			return err
		}
		st.apply(e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.overlay(e, m, marked)
	s.fillGroups(e)
	return e, nil
}

// fillGroups lists every interested group in e.Groups, PUBLISHED for those
// that have not seen the event yet, in name order.
func (s *Store) fillGroups(e *event.Event) {
	if e.Sequence == 0 {
		return
	}
	st := state{Status: e.Status, Groups: e.Groups}
	e.Groups = st.groupsIn(interested(s.groupSnapshot(), e.Type, e.Sequence))
	// Groups that are no longer interested (deleted, say) keep their entries.
	for _, g := range st.Groups {
		if !slices.ContainsFunc(e.Groups, func(x event.GroupStatus) bool { return x.Group == g.Group }) {
			e.Groups = append(e.Groups, g)
		}
	}
}

// Unpublished implements event.Ledger.
func (s *Store) Unpublished() ([]event.Pending, error) {
	// Snapshot the pending marks first, as Get does: a mark committed after
	// the snapshot is seen by the read.
	s.markMu.Lock()
	pending := make(map[ID]struct{}, len(s.marked))
	for id := range s.marked {
		pending[id] = struct{}{}
	}
	s.markMu.Unlock()
	var out []event.Pending
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketByStatus).Cursor()
		prefix := []byte{byte(event.StatusAccepted)}
		for k, v := c.Seek(prefix); k != nil && k[0] == prefix[0]; k, v = c.Next() {
			floor, _ := binary.Uvarint(v)
			out = append(out, event.Pending{ID: ID(k[1:]), Floor: floor})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	kept := out[:0]
	for _, p := range out {
		if _, ok := pending[p.ID]; !ok {
			kept = append(kept, p)
		}
	}
	return kept, nil
}

// PublishedAfter implements event.Ledger. Events whose payload was dropped
// are left out: every group processed them, and publishing them again would
// only deliver an empty duplicate.
func (s *Store) PublishedAfter(seq uint64) ([]event.Pending, error) {
	var out []event.Pending
	err := s.db.View(func(tx *bolt.Tx) error {
		states, byStatus := tx.Bucket(bucketState), tx.Bucket(bucketByStatus)
		c := tx.Bucket(bucketSequences).Cursor()
		for k, v := c.Seek(seqKey(seq + 1)); k != nil; k, v = c.Next() {
			if len(v) != len(ID{}) {
				continue // a redrive message, not the event's own
			}
			st, _, err := readState(states, byStatus, ID(v))
			if err != nil {
				return err
			}
			if st.PayloadDropped {
				continue
			}
			out = append(out, event.Pending{ID: ID(v), Sequence: binary.BigEndian.Uint64(k)})
		}
		return nil
	})
	return out, err
}

// expireIdempotencyKeys forgets up to perTx keys older than IdempotencyTTL,
// oldest first, in one transaction, and reports whether more are due. Bounded
// so that appends never wait long behind it.
func (s *Store) expireIdempotencyKeys() (more bool) {
	const perTx = 1000
	cutoff := s.Now().Add(-s.IdempotencyTTL)
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		idem, expiry := tx.Bucket(bucketIdem), tx.Bucket(bucketIdemExpiry)
		c := expiry.Cursor()
		for k, key := c.First(); k != nil && n < perTx; k, key = c.First() {
			if !ID(k).Time().Before(cutoff) {
				break
			}
			if v := idem.Get(key); len(v) >= 16 && bytes.Equal(v[:16], k) {
				if err := idem.Delete(key); err != nil {
					return err
				}
			}
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		s.Logger.Error("expire idempotency keys", "err", err)
		return false
	}
	return n == perTx
}
