package boltstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/jsctl/jsctl/event"
)

// Retention bounds how long the ledger keeps events once they are done, so
// that it does not grow without bound. A zero duration keeps them forever.
type Retention struct {
	// Processed is how long an event is kept after it became PROCESSED.
	// Default 168h (7 days).
	Processed time.Duration
	// Failed is how long an event is kept after it became FAILED; a
	// redrive starts the count again when the event fails again. Default
	// 720h (30 days).
	Failed time.Duration
	// Published is how long after its creation an event still PUBLISHED is
	// kept: one that no consumer group settled (or that no group is
	// interested in). Default 0, forever.
	Published time.Duration
	// Delivered is how long after its creation an event still DELIVERED is
	// kept: handed out but never settled (a native client's outcome lost in
	// a crash, say, or its group deleted meanwhile). Default 0, forever.
	Delivered time.Duration
	// Tombstones is how long after its removal an expired event's ID is
	// remembered with its status and removal time. After that Get can say
	// only that the ID is older than the retention window. Default 720h.
	Tombstones time.Duration
	// DropProcessedPayloads rewrites an event's body without its payload
	// when the event becomes PROCESSED; Get then returns an empty payload.
	// Default false.
	DropProcessedPayloads bool
}

// DefaultRetention returns the defaults documented on Retention.
func DefaultRetention() Retention {
	return Retention{Processed: 7 * 24 * time.Hour, Failed: 30 * 24 * time.Hour, Tombstones: 30 * 24 * time.Hour}
}

// retentionPerTx bounds the records one retention pass handles (events
// removed, tombstones forgotten, finished entries added after an upgrade),
// so that appends never wait long behind it.
const retentionPerTx = 256

// Meta keys used by retention.
var (
	// keyExpiredBefore holds the newest creation time (varint Unix
	// nanoseconds) among the IDs whose tombstones were forgotten.
	keyExpiredBefore = []byte("expired_before")
	// keyFinishedBackfill exists while events finished under schema 1 are
	// being added to the finished index; it holds the last status index key
	// done (empty at first).
	keyFinishedBackfill = []byte("finished_backfill")
)

// finishedKey is the finished index key: the status byte, the 8-byte
// big-endian Unix nanoseconds the event finished at, the ID.
func finishedKey(s event.Status, at time.Time, id ID) []byte {
	k := make([]byte, 0, 1+8+16)
	k = append(k, byte(s))
	k = binary.BigEndian.AppendUint64(k, uint64(unixNano(at)))
	return append(k, id[:]...)
}

// tombstoneExpiryKey orders tombstones by removal time: 8-byte big-endian
// Unix nanoseconds, then the ID.
func tombstoneExpiryKey(removed time.Time, id ID) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+16), uint64(unixNano(removed)))
	return append(k, id[:]...)
}

// keyTime reads the big-endian Unix nanoseconds at the start of b.
func keyTime(b []byte) time.Time { return timeOf(int64(binary.BigEndian.Uint64(b))) }

// applyRetention runs one bounded retention pass in one transaction: it
// indexes events finished under schema 1, removes events past their
// retention (leaving a tombstone each), and forgets tombstones past theirs.
// It reports whether more is due.
func (s *Store) applyRetention() (more bool) {
	now := s.Now()
	var sw *sweep
	err := s.db.Update(func(tx *bolt.Tx) error {
		sw = &sweep{
			writer:          s.newWriter(tx, now),
			meta:            tx.Bucket(bucketMeta),
			tombstones:      tx.Bucket(bucketTombstones),
			tombstoneExpiry: tx.Bucket(bucketTombstoneExpiry),
			budget:          retentionPerTx,
			removed:         map[event.Status]int{},
		}
		return sw.run(s.Retention)
	})
	if err != nil {
		s.Logger.Error("apply ledger retention", "err", storageError(err))
		return false
	}
	if s.OnExpire != nil {
		for _, st := range []event.Status{event.StatusPublished, event.StatusDelivered, event.StatusProcessed, event.StatusFailed} {
			if n := sw.removed[st]; n > 0 {
				s.OnExpire(st, n)
			}
		}
	}
	s.notifyAll(sw.removedIDs)
	return sw.budget == 0
}

// sweep is one retention pass.
type sweep struct {
	*writer
	meta, tombstones, tombstoneExpiry *bolt.Bucket

	budget     int // records this pass may still handle
	removed    map[event.Status]int
	removedIDs []ID
}

func (sw *sweep) run(r Retention) error {
	if err := sw.backfillFinished(); err != nil {
		return err
	}
	for _, st := range []event.Status{event.StatusProcessed, event.StatusFailed} {
		keep := r.Processed
		if st == event.StatusFailed {
			keep = r.Failed
		}
		if keep > 0 {
			if err := sw.expireFinished(st, sw.now.Add(-keep)); err != nil {
				return err
			}
		}
	}
	for _, u := range []struct {
		st   event.Status
		keep time.Duration
	}{{event.StatusPublished, r.Published}, {event.StatusDelivered, r.Delivered}} {
		if u.keep > 0 {
			if err := sw.expireUnsettled(u.st, sw.now.Add(-u.keep)); err != nil {
				return err
			}
		}
	}
	if r.Tombstones > 0 {
		return sw.forgetTombstones(sw.now.Add(-r.Tombstones))
	}
	return nil
}

// due collects, from the key seek on, the keys that while accepts, at most
// the remaining budget. Keys are copied: the pass deletes what it visits,
// which must not happen under a live cursor.
func (sw *sweep) due(b *bolt.Bucket, seek []byte, while func(k []byte) bool) [][]byte {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(seek); k != nil && len(keys) < sw.budget && while(k); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	sw.budget -= len(keys)
	return keys
}

// expireFinished removes the events that reached status st before cutoff.
// An entry the event's state does not confirm (it left st, by a redrive)
// is stale and only deleted.
func (sw *sweep) expireFinished(st event.Status, cutoff time.Time) error {
	keys := sw.due(sw.finished, []byte{byte(st)}, func(k []byte) bool {
		return k[0] == byte(st) && keyTime(k[1:]).Before(cutoff)
	})
	for _, k := range keys {
		if err := sw.finished.Delete(k); err != nil {
			return fmt.Errorf("finished index: %w", err)
		}
		id := ID(k[9:])
		cur, recorded, err := sw.readState(id)
		if err != nil {
			return err
		}
		if !recorded || cur.Status != st || !cur.FinishedAt.Equal(keyTime(k[1:])) {
			continue
		}
		if err := sw.expire(id, cur); err != nil {
			return err
		}
	}
	return nil
}

// expireUnsettled removes the events still in status st (PUBLISHED or
// DELIVERED) that were created before cutoff. The status index holds them
// in ID, that is creation, order.
func (sw *sweep) expireUnsettled(st event.Status, cutoff time.Time) error {
	keys := sw.due(sw.byStatus, []byte{byte(st)}, func(k []byte) bool {
		return k[0] == byte(st) && ID(k[1:]).Time().Before(cutoff)
	})
	for _, k := range keys {
		id := ID(k[1:])
		cur, _, err := sw.readState(id)
		if err != nil {
			return err
		}
		if cur.Status != st {
			// Not the event's status: a stale index entry.
			if err := sw.byStatus.Delete(k); err != nil {
				return fmt.Errorf("status index: %w", err)
			}
			continue
		}
		if err := sw.expire(id, cur); err != nil {
			return err
		}
	}
	return nil
}

// expire removes the event with state st and every index entry that names
// it, and leaves a tombstone. Its finished entry is already gone.
func (sw *sweep) expire(id ID, st *state) error {
	for _, del := range []struct {
		b   *bolt.Bucket
		key []byte
	}{
		{sw.events, id[:]},
		{sw.state, id[:]},
		{sw.byStatus, statusKey(st.Status, id)},
	} {
		if err := del.b.Delete(del.key); err != nil {
			return fmt.Errorf("remove expired event %s: %w", id, err)
		}
	}
	if err := sw.forgetSequences(id, st); err != nil {
		return err
	}
	if key := sw.idemExpiry.Get(id[:]); key != nil {
		if v := sw.idem.Get(key); len(v) >= 16 && bytes.Equal(v[:16], id[:]) {
			if err := sw.idem.Delete(key); err != nil {
				return fmt.Errorf("remove idempotency key: %w", err)
			}
		}
		if err := sw.idemExpiry.Delete(id[:]); err != nil {
			return fmt.Errorf("remove idempotency key: %w", err)
		}
	}
	tomb := binary.AppendVarint([]byte{byte(st.Status)}, unixNano(sw.now))
	if err := sw.tombstones.Put(id[:], tomb); err != nil {
		return fmt.Errorf("put tombstone: %w", err)
	}
	if err := sw.tombstoneExpiry.Put(tombstoneExpiryKey(sw.now, id), nil); err != nil {
		return fmt.Errorf("put tombstone: %w", err)
	}
	sw.removed[st.Status]++
	sw.removedIDs = append(sw.removedIDs, id)
	return nil
}

// forgetSequences deletes the sequences entries of the event's messages:
// its own, and those of its redrives. An entry that a later message took
// over (after a power cut shortened the stream) names another event and
// stays.
func (sw *sweep) forgetSequences(id ID, st *state) error {
	seqs := []uint64{st.Sequence}
	for _, g := range st.Groups {
		seqs = append(seqs, g.Sequence)
	}
	for _, t := range st.History {
		seqs = append(seqs, t.Sequence)
	}
	for _, seq := range seqs {
		if seq == 0 {
			continue
		}
		if v := sw.sequences.Get(seqKey(seq)); len(v) >= 16 && bytes.Equal(v[:16], id[:]) {
			if err := sw.sequences.Delete(seqKey(seq)); err != nil {
				return fmt.Errorf("sequence index: %w", err)
			}
		}
	}
	return nil
}

// forgetTombstones deletes the tombstones of events removed before cutoff,
// and raises the expired_before watermark to the newest of their IDs.
func (sw *sweep) forgetTombstones(cutoff time.Time) error {
	keys := sw.due(sw.tombstoneExpiry, nil, func(k []byte) bool { return keyTime(k).Before(cutoff) })
	if len(keys) == 0 {
		return nil
	}
	watermark := expiredBefore(sw.meta)
	for _, k := range keys {
		id := ID(k[8:])
		if err := sw.tombstoneExpiry.Delete(k); err != nil {
			return fmt.Errorf("tombstone index: %w", err)
		}
		if err := sw.tombstones.Delete(id[:]); err != nil {
			return fmt.Errorf("remove tombstone: %w", err)
		}
		if created := id.Time(); created.After(watermark) {
			watermark = created
		}
	}
	return sw.meta.Put(keyExpiredBefore, binary.AppendVarint(nil, watermark.UnixNano()))
}

// expiredBefore reads the watermark: IDs created at or before it may have
// expired without a tombstone left. Zero if no tombstone was forgotten yet.
func expiredBefore(meta *bolt.Bucket) time.Time {
	v := meta.Get(keyExpiredBefore)
	if v == nil {
		return time.Time{}
	}
	ns, _ := binary.Varint(v)
	return time.Unix(0, ns)
}

// backfillFinished adds the finished index entries (and finished times) of
// events that finished under schema 1, as long as the upgrade left
// keyFinishedBackfill. The finished time is that of the last overall
// transition to the status in the event's history.
func (sw *sweep) backfillFinished() error {
	cursor := sw.meta.Get(keyFinishedBackfill)
	if cursor == nil {
		return nil
	}
	seek := []byte{byte(event.StatusProcessed)}
	if len(cursor) > 0 {
		seek = nextKey(cursor)
	}
	budget := sw.budget
	keys := sw.due(sw.byStatus, seek, func(k []byte) bool {
		return k[0] == byte(event.StatusProcessed) || k[0] == byte(event.StatusFailed)
	})
	for _, k := range keys {
		id := ID(k[1:])
		st, recorded, err := sw.readState(id)
		if err != nil {
			return err
		}
		if !recorded || !st.Status.Terminal() || !st.FinishedAt.IsZero() {
			continue
		}
		st.FinishedAt = id.Time()
		for _, t := range st.History {
			if t.Group == "" && t.To == st.Status {
				st.FinishedAt = t.Time
			}
		}
		if err := sw.finished.Put(finishedKey(st.Status, st.FinishedAt, id), nil); err != nil {
			return fmt.Errorf("finished index: %w", err)
		}
		if err := sw.state.Put(id[:], encodeState(nil, st)); err != nil {
			return fmt.Errorf("put state: %w", err)
		}
	}
	if len(keys) < budget {
		return sw.meta.Delete(keyFinishedBackfill) // reached the end
	}
	return sw.meta.Put(keyFinishedBackfill, keys[len(keys)-1])
}

// notFound explains why the event id is not in the ledger: removed by
// retention (its tombstone says when and in which status), older than the
// tombstones kept, or unknown.
func notFound(tx *bolt.Tx, id ID) error {
	if v := tx.Bucket(bucketTombstones).Get(id[:]); len(v) > 1 {
		removed, _ := binary.Varint(v[1:])
		return fmt.Errorf("%w: event %s expired: removed by retention on %s (it was %s)",
			event.ErrNotFound, id, timeOf(removed).Format(time.RFC3339), event.Status(v[0]))
	}
	if w := expiredBefore(tx.Bucket(bucketMeta)); !w.IsZero() && !id.Time().After(w) {
		return fmt.Errorf("%w: no event with correlation_id %s: it is older than the retention window, so it expired or never existed", event.ErrNotFound, id)
	}
	return fmt.Errorf("%w: no event with correlation_id %s", event.ErrNotFound, id)
}
