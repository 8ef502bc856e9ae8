package boltstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/jsctl/jsctl/event"
)

// appendReq is one Append waiting for the committer.
type appendReq struct {
	ev    *event.Event
	hash  [sha256.Size]byte
	floor uint64
	body  []byte

	// set by the committer before done is signalled
	existing *ID // the event the idempotency key already names
	err      error
	done     chan struct{}
}

// mark is one MarkPublished waiting to be committed.
type mark struct {
	id     ID
	seq    uint64
	at     time.Time
	reason string
}

// update is a status change waiting to be committed: a PUBLISHED mark or an
// outcome in a consumer group. Updates are applied in the order they were
// made.
type update struct {
	mark  *mark
	group *event.GroupUpdate
	bySeq *event.SeqUpdate // a group outcome known by stream sequence only
	done  chan error       // if set, told once the update is durable or failed
}

// CommitStats describes one group commit.
type CommitStats struct {
	Appends, Updates int           // events appended, status updates written
	Took             time.Duration // the whole transaction, fsyncs included
	// Pages bbolt wrote, and the time it spent writing them and in its two
	// fdatasyncs (data pages, then the meta page): the floor of a commit.
	Pages     int
	WriteTime time.Duration
}

// commitLoop is the single writer. Each round takes every append waiting at
// that moment, and the status updates if they are due (see takeUpdates), and
// commits them in one transaction (bbolt fsyncs it twice: data, then meta). While it commits, new
// requests queue up for the next round: the batch grows with the load, and no
// append waits for a timer.
func (s *Store) commitLoop() {
	defer close(s.done)
	cleanup := time.NewTicker(s.CleanupInterval)
	defer cleanup.Stop()
	marksDue := time.NewTimer(time.Hour)
	marksDue.Stop()
	batch := make([]*appendReq, 0, s.MaxBatch)
	keysDue, retentionDue := false, false
	for {
		// One bounded cleanup transaction, then a round of appends, then
		// the next: an append waits for at most one of them.
		switch {
		case keysDue:
			keysDue = s.expireIdempotencyKeys()
		case retentionDue:
			retentionDue = s.applyRetention()
		}
		if keysDue || retentionDue {
			s.poke()
		}
		select {
		case r := <-s.appends:
			batch = append(batch, r)
		case <-s.wake:
		case <-marksDue.C:
		case <-cleanup.C:
			keysDue, retentionDue = true, true
			s.releaseMappedPages()
			continue
		case <-s.closing:
			s.drain(batch)
			return
		}
		batch = s.fill(batch)
		updates, wait := s.takeUpdates(false)
		if wait > 0 {
			marksDue.Reset(wait)
		}
		s.commit(batch, updates)
		clear(batch)
		batch = batch[:0]
		s.preallocate()
	}
}

// fill adds the appends already queued, without waiting.
func (s *Store) fill(batch []*appendReq) []*appendReq {
	for len(batch) < s.MaxBatch {
		select {
		case r := <-s.appends:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// drain commits everything queued at Close. No Append can enqueue any more.
// Updates that cannot be written are given up: marks are redone by start-up
// recovery, and unacknowledged deliveries are delivered again.
func (s *Store) drain(batch []*appendReq) {
	for {
		batch = s.fill(batch)
		updates, _ := s.takeUpdates(true)
		if len(batch) == 0 && len(updates) == 0 {
			return
		}
		if err := s.commit(batch, updates); err != nil && len(batch) == 0 {
			s.Logger.Warn("status updates not written at close", "updates", len(updates), "err", err)
			rest, _ := s.takeUpdates(true)
			s.failUpdates(rest, err)
			return
		}
		clear(batch)
		batch = batch[:0]
	}
}

// poke wakes the committer without blocking.
func (s *Store) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// takeUpdates returns the queued status updates when they are due: when
// force is set, when one of them is not a PUBLISHED mark (consumer outcomes
// are written at the next commit, and updates stay in order), when MarkBatch
// marks are queued, or when the oldest has waited MarkDelay. Otherwise it
// returns nil and how long until the oldest is due.
//
// Marks need not be durable before NewEvent replies (recovery finds an
// ACCEPTED event in the stream), and Get and Unpublished see them while they
// wait. Writing hundreds at once touches the same few index pages once,
// instead of once per commit: it halves the ledger's work per event.
func (s *Store) takeUpdates(force bool) ([]update, time.Duration) {
	s.markMu.Lock()
	defer s.markMu.Unlock()
	if len(s.updates) == 0 {
		return nil, 0
	}
	if !force && s.urgent == 0 && len(s.updates) < s.MarkBatch {
		if wait := s.MarkDelay - time.Since(s.updatesSince); wait > 0 {
			return nil, wait
		}
	}
	u := s.updates
	s.updates, s.urgent = nil, 0
	return u, 0
}

// enqueue adds an update, and wakes the committer when the queue becomes
// due or starts (so that it can time the oldest mark).
func (s *Store) enqueue(u update) {
	s.markMu.Lock()
	if u.mark != nil {
		s.marked[u.mark.id] = *u.mark
	} else {
		s.urgent++
	}
	if len(s.updates) == 0 {
		s.updatesSince = time.Now()
	}
	s.updates = append(s.updates, u)
	wake := len(s.updates) == 1 || u.mark == nil || len(s.updates) >= s.MarkBatch
	s.markMu.Unlock()
	if wake {
		s.poke()
	}
}

// commit writes one batch, replies to its appends and retires its updates.
// If the transaction fails, every append in it gets the error, waiting
// updates get it too, and the other updates are queued again.
func (s *Store) commit(batch []*appendReq, updates []update) error {
	if len(batch) == 0 && len(updates) == 0 {
		return nil
	}
	start := time.Now()
	var before bolt.TxStats
	if s.OnCommit != nil {
		before = s.db.Stats().TxStats
	}
	changed, statusChanges, err := s.write(batch, updates)
	if err == nil && s.OnCommit != nil {
		after := s.db.Stats().TxStats
		s.OnCommit(CommitStats{
			Appends: len(batch), Updates: len(updates), Took: time.Since(start),
			Pages:     int(after.GetWrite() - before.GetWrite()),
			WriteTime: after.GetWriteTime() - before.GetWriteTime(),
		})
	}
	if err == nil && s.OnStatus != nil {
		for _, c := range statusChanges {
			s.OnStatus(c.eventType, c.to)
		}
	}
	if err != nil && len(batch) > 0 && len(updates) > 0 {
		// Do not let updates that cannot be written (a full disk, say) fail
		// the appends with them: try the appends alone.
		s.Logger.Error("ledger commit failed; retrying the appends alone", "appends", len(batch), "updates", len(updates), "err", err)
		s.requeue(updates, err)
		updates = nil
		changed, _, err = s.write(batch, nil)
	}
	if err != nil {
		s.Logger.Error("ledger commit failed", "appends", len(batch), "updates", len(updates), "err", err)
	}
	for _, r := range batch {
		if err != nil {
			r.existing, r.err = nil, err
		}
		r.done <- struct{}{}
	}
	if err != nil {
		s.requeue(updates, err)
		return err
	}
	s.markMu.Lock()
	for _, u := range updates {
		if m := u.mark; m != nil {
			if cur, ok := s.marked[m.id]; ok && cur.seq == m.seq {
				delete(s.marked, m.id)
			}
		}
	}
	s.markMu.Unlock()
	for _, u := range updates {
		if u.done != nil {
			u.done <- nil
		}
	}
	s.notifyAll(changed)
	return nil
}

// write runs one transaction: updates first, so that an append resolved to an
// existing event by its idempotency key reads that event's latest status.
// It returns the events whose status changed.
func (s *Store) write(batch []*appendReq, updates []update) ([]ID, []statusChange, error) {
	now := s.Now()
	var changed []ID
	var statusChanges []statusChange
	err := s.db.Update(func(tx *bolt.Tx) error {
		w := s.newWriter(tx, now)
		defer func() { statusChanges = w.statusChanges }()
		changed = changed[:0]
		for _, u := range updates {
			var id ID
			var err error
			switch {
			case u.mark != nil:
				id, err = u.mark.id, w.mark(*u.mark)
			case u.group != nil:
				id, err = u.group.ID, w.group(*u.group)
			default:
				id, err = w.bySeq(*u.bySeq)
			}
			if err != nil {
				return err
			}
			if id != (ID{}) {
				changed = append(changed, id)
			}
		}
		for _, r := range batch {
			r.existing, r.err = nil, nil
			if err := w.append(r, now, s.IdempotencyTTL); err != nil {
				return err
			}
		}
		// The mark before this commit's own allocations: close enough for
		// preallocate, which keeps megabytes of margin.
		s.highWater = tx.Size()
		return nil
	})
	if err != nil {
		return nil, nil, storageError(err)
	}
	return changed, statusChanges, nil
}

// requeue puts updates that could not be written back at the head of the
// queue, except those with a waiter, which get the error instead.
func (s *Store) requeue(updates []update, err error) {
	var again []update
	for _, u := range updates {
		if u.done != nil {
			u.done <- err
			continue
		}
		again = append(again, u)
	}
	if len(again) == 0 {
		return
	}
	s.markMu.Lock()
	s.updates = append(again, s.updates...)
	s.updatesSince = time.Time{} // due at once
	s.markMu.Unlock()
}

// failUpdates tells the waiters among updates that they were not written.
func (s *Store) failUpdates(updates []update, err error) {
	for _, u := range updates {
		if u.done != nil {
			u.done <- err
		}
	}
}

// writer holds the buckets of one write transaction.
type writer struct {
	events, state, byStatus, sequences, idem, idemExpiry, finished *bolt.Bucket
	groups                                                         map[string]event.Group

	now          time.Time // the transaction's time: when events finish
	dropPayloads bool      // Retention.DropProcessedPayloads

	// statusChanges are the overall status changes made by consumer
	// outcomes in this transaction, reported after it commits.
	statusChanges []statusChange
}

// statusChange is an event's new overall status, for OnStatus.
type statusChange struct {
	eventType string
	to        event.Status
}

func (s *Store) newWriter(tx *bolt.Tx, now time.Time) *writer {
	w := &writer{
		events:       tx.Bucket(bucketEvents),
		state:        tx.Bucket(bucketState),
		byStatus:     tx.Bucket(bucketByStatus),
		sequences:    tx.Bucket(bucketSequences),
		idem:         tx.Bucket(bucketIdem),
		idemExpiry:   tx.Bucket(bucketIdemExpiry),
		finished:     tx.Bucket(bucketFinished),
		groups:       s.groupSnapshot(),
		now:          now,
		dropPayloads: s.Retention.DropProcessedPayloads,
	}
	// Keys arrive in time order (within each status, for the status and
	// finished indexes), so pages can be packed full: a split leaves the left
	// page full instead of half empty. With the default, by_status was 51%
	// full after 1M events: 90 B per event instead of ~48.
	for _, b := range []*bolt.Bucket{w.events, w.sequences, w.idemExpiry, w.byStatus, w.finished} {
		b.FillPercent = 0.95
	}
	return w
}

// append stores r's event, or resolves r to the event its idempotency key names.
func (w *writer) append(r *appendReq, now time.Time, ttl time.Duration) error {
	e := r.ev
	if e.IdempotencyKey != "" {
		key := []byte(e.IdempotencyKey)
		if v := w.idem.Get(key); len(v) == 16+sha256.Size {
			id := ID(v[:16])
			if now.Sub(id.Time()) < ttl {
				if !bytes.Equal(v[16:], r.hash[:]) {
					r.err = fmt.Errorf("%w: idempotency_key %q was used for event %s with a different body", event.ErrConflict, e.IdempotencyKey, id)
					return nil
				}
				r.existing = &id
				return nil
			}
		}
		v := make([]byte, 0, 16+sha256.Size)
		v = append(append(v, e.ID[:]...), r.hash[:]...)
		if err := w.idem.Put(key, v); err != nil {
			return fmt.Errorf("put idempotency key: %w", err)
		}
		if err := w.idemExpiry.Put(e.ID[:], key); err != nil {
			return fmt.Errorf("put idempotency expiry: %w", err)
		}
	}
	if err := w.events.Put(e.ID[:], r.body); err != nil {
		return fmt.Errorf("put event: %w", err)
	}
	if err := w.byStatus.Put(statusKey(event.StatusAccepted, e.ID), binary.AppendUvarint(nil, r.floor)); err != nil {
		return fmt.Errorf("put status index: %w", err)
	}
	return nil
}

// mark records m. A mark for an event already at m.seq does nothing. The
// first mark of an event writes no state record: the status index entry
// [PUBLISHED][id] carries it (see readState), which makes a mark three small
// index writes.
func (w *writer) mark(m mark) error {
	if w.events.Get(m.id[:]) == nil {
		return nil // removed since; nothing to mark
	}
	st, recorded, err := w.readState(m.id)
	if err != nil {
		return err
	}
	old := *st
	if !st.markPublished(m) {
		return nil
	}
	if old.Sequence != 0 {
		if err := w.sequences.Delete(seqKey(old.Sequence)); err != nil {
			return err
		}
	}
	if err := w.sequences.Put(seqKey(m.seq), m.id[:]); err != nil {
		return err
	}
	if old.Status == event.StatusAccepted && !recorded {
		if err := w.byStatus.Delete(statusKey(event.StatusAccepted, m.id)); err != nil {
			return fmt.Errorf("status index: %w", err)
		}
		return w.byStatus.Put(statusKey(event.StatusPublished, m.id), encodeMark(nil, m))
	}
	return w.putState(m.id, &old, st)
}

// readState returns the event's state, and whether a state record holds it.
func (w *writer) readState(id ID) (*state, bool, error) {
	return readState(w.state, w.byStatus, id)
}

// putState writes st, which was old, and moves the event in the status
// index. When the overall status becomes PROCESSED or FAILED it records the
// finished time and its finished index entry (and drops a processed
// payload if so configured); when it leaves one, it removes the entry.
func (w *writer) putState(id ID, old, st *state) error {
	if old.Status != st.Status {
		if err := w.finish(id, old, st); err != nil {
			return err
		}
	}
	if err := w.state.Put(id[:], encodeState(nil, st)); err != nil {
		return fmt.Errorf("put state: %w", err)
	}
	if old.Status == st.Status {
		return nil
	}
	if err := w.byStatus.Delete(statusKey(old.Status, id)); err != nil {
		return fmt.Errorf("status index: %w", err)
	}
	if err := w.byStatus.Put(statusKey(st.Status, id), nil); err != nil {
		return fmt.Errorf("status index: %w", err)
	}
	return nil
}

// finish keeps the finished index in step with a change of overall status
// from old to st.
func (w *writer) finish(id ID, old, st *state) error {
	if !old.FinishedAt.IsZero() {
		if err := w.finished.Delete(finishedKey(old.Status, old.FinishedAt, id)); err != nil {
			return fmt.Errorf("finished index: %w", err)
		}
	}
	st.FinishedAt = time.Time{}
	if !st.Status.Terminal() {
		return nil
	}
	st.FinishedAt = w.now
	if err := w.finished.Put(finishedKey(st.Status, st.FinishedAt, id), nil); err != nil {
		return fmt.Errorf("finished index: %w", err)
	}
	if st.Status == event.StatusProcessed && w.dropPayloads && !st.PayloadDropped {
		if err := w.dropPayload(id); err != nil {
			return err
		}
		st.PayloadDropped = true
	}
	return nil
}

// dropPayload rewrites the event's body without its payload.
func (w *writer) dropPayload(id ID) error {
	var e event.Event
	if err := decodeBody(w.events.Get(id[:]), &e, false); err != nil {
		return fmt.Errorf("%w: event %s: %w", event.ErrCorrupt, id, err)
	}
	if err := w.events.Put(id[:], encodeBody(nil, &e)); err != nil {
		return fmt.Errorf("put event: %w", err)
	}
	return nil
}

// statusKey is the status index key: the status byte, then the ID.
func statusKey(s event.Status, id ID) []byte {
	k := make([]byte, 0, 17)
	return append(append(k, byte(s)), id[:]...)
}

// seqKey is the sequences index key.
func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// readState decodes an event's state. Without a state record the event is
// PUBLISHED if the status index holds its mark, else ACCEPTED. The boolean
// reports whether a state record exists.
func readState(states, byStatus *bolt.Bucket, id ID) (*state, bool, error) {
	if v := states.Get(id[:]); v != nil {
		st, err := decodeState(v)
		if err != nil {
			return nil, false, fmt.Errorf("%w: state of %s: %w", event.ErrCorrupt, id, err)
		}
		return st, true, nil
	}
	st := &state{Status: event.StatusAccepted}
	if v := byStatus.Get(statusKey(event.StatusPublished, id)); v != nil {
		m, err := decodeMark(v)
		if err != nil {
			return nil, false, fmt.Errorf("%w: mark of %s: %w", event.ErrCorrupt, id, err)
		}
		m.id = id
		st.markPublished(m)
	}
	return st, false, nil
}

// encodeMark and decodeMark store a first PUBLISHED mark in the status index.
func encodeMark(buf []byte, m mark) []byte {
	buf = binary.AppendUvarint(buf, m.seq)
	buf = binary.AppendVarint(buf, unixNano(m.at))
	return appendString(buf, m.reason)
}

func decodeMark(b []byte) (mark, error) {
	d := decoder{b: b}
	m := mark{seq: d.uvarint()}
	m.at = timeOf(d.varint())
	m.reason = d.string()
	return m, d.err
}

// markPublished applies m and reports whether anything changed.
func (st *state) markPublished(m mark) bool {
	if st.Sequence == m.seq {
		return false
	}
	to := max(st.Status, event.StatusPublished)
	st.History = append(st.History, event.Transition{From: st.Status, To: to, Time: m.at, Reason: m.reason, Sequence: m.seq})
	st.Status, st.Sequence = to, m.seq
	return true
}

// apply copies the state into e, after the implied first transition.
func (st *state) apply(e *event.Event) {
	e.Status, e.Sequence, e.Groups = st.Status, st.Sequence, st.Groups
	e.History = make([]event.Transition, 0, 1+len(st.History))
	e.History = append(e.History, event.Transition{To: event.StatusAccepted, Time: e.CreatedAt})
	e.History = append(e.History, st.History...)
}
