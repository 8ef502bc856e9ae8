package boltstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/jsctl/jsctl/event"
)

// retentionStore opens a store on a clock the test moves, with consumer
// group "g" interested in every event. Retention passes run when the test
// calls sweepAll. After it is closed, bbolt's consistency check must pass.
func retentionStore(t *testing.T, opts ...func(*Store)) (*Store, *FakeClock) {
	t.Helper()
	clock := &FakeClock{}
	s := openChecked(t, append([]func(*Store){func(s *Store) {
		s.Now = clock.Now
		s.CleanupInterval = time.Hour
	}}, opts...)...)
	if err := s.SaveGroup(event.DefaultGroup("g")); err != nil {
		t.Fatal(err)
	}
	return s, clock
}

// openChecked is openInternal with bbolt's consistency check of the file
// once the store is closed (a check while the committer writes can report
// pages a concurrent commit freed).
func openChecked(t *testing.T, opts ...func(*Store)) *Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db") // removed after the check
	var s *Store
	t.Cleanup(func() { CheckFile(t, s.Path) }) // registered before openInternal's, so it runs after the Close
	s = openInternal(t, append([]func(*Store){func(s *Store) { s.Path = path }}, opts...)...)
	return s
}

// publishedAt appends e, marks it published at seq and waits for the mark's
// commit.
func publishedAt(t *testing.T, s *Store, e *event.Event, seq uint64) *event.Event {
	t.Helper()
	if _, _, err := s.Append(e, seq-1); err != nil {
		t.Fatal(err)
	}
	s.MarkPublished(e.ID, seq, "")
	settle(t, s, event.GroupUpdate{Group: "not-a-group"}) // a barrier: updates apply in order
	return e
}

// settled publishes e at seq and settles it in group g: OutcomeAcked makes
// it PROCESSED, OutcomeTerminated FAILED.
func settled(t *testing.T, s *Store, e *event.Event, seq uint64, o event.Outcome) *event.Event {
	t.Helper()
	publishedAt(t, s, e, seq)
	settle(t, s, event.GroupUpdate{ID: e.ID, Group: "g", Outcome: o, Deliveries: 1, Sequence: seq})
	return e
}

// settle records u and waits for its commit.
func settle(t *testing.T, s *Store, u event.GroupUpdate) {
	t.Helper()
	u.Time = s.Now()
	if err := s.RecordGroupSync(t.Context(), u); err != nil {
		t.Fatalf("RecordGroupSync(%+v): %v", u, err)
	}
}

// sweepAll runs retention passes until one reports nothing more due.
func sweepAll(s *Store) {
	for s.applyRetention() {
	}
}

func wantKept(t *testing.T, s *Store, evs ...*event.Event) {
	t.Helper()
	for _, e := range evs {
		if _, err := s.Get(e.ID, false); err != nil {
			t.Errorf("event %s was removed: %v", e.ID, err)
		}
	}
}

func wantExpired(t *testing.T, s *Store, e *event.Event, was event.Status) {
	t.Helper()
	_, err := s.Get(e.ID, false)
	want := fmt.Sprintf("not found: event %s expired: removed by retention on ", e.ID)
	if !errors.Is(err, event.ErrNotFound) || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "(it was "+was.String()+")") {
		t.Errorf("Get(%s) = %v; want ErrNotFound saying it expired and was %s", e.ID, err, was)
	}
}

// keyCount counts the keys of a bucket.
func keyCount(t *testing.T, s *Store, bucket []byte) int {
	t.Helper()
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucket).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// readStored returns the event's state record.
func readStored(t *testing.T, s *Store, id ID) *state {
	t.Helper()
	var st *state
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		st, _, err = readState(tx.Bucket(bucketState), tx.Bucket(bucketByStatus), id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestRetentionExpiresFinishedEvents(t *testing.T) {
	expired := map[event.Status]int{}
	s, clock := retentionStore(t, func(s *Store) {
		s.OnExpire = func(st event.Status, n int) { expired[st] += n } // sweepAll runs on this goroutine
	})
	r := s.Retention
	processed := settled(t, s, internalEvent(t, []byte("p"), ""), 1, event.OutcomeAcked)
	failed := settled(t, s, internalEvent(t, []byte("f"), ""), 2, event.OutcomeTerminated)
	unsettled := publishedAt(t, s, internalEvent(t, []byte("u"), ""), 3)
	changed, stop := s.Watch(processed.ID)
	defer stop()

	clock.Advance(r.Processed - time.Minute)
	sweepAll(s)
	wantKept(t, s, processed, failed, unsettled)
	if got := mustGetPayload(t, s, processed.ID); got != "p" {
		t.Errorf("payload of a PROCESSED event = %q without DropProcessedPayloads, want %q", got, "p")
	}

	clock.Advance(2 * time.Minute)
	sweepAll(s)
	wantExpired(t, s, processed, event.StatusProcessed)
	wantKept(t, s, failed, unsettled)
	select {
	case <-changed:
	default:
		t.Error("a watcher of the expired event was not signalled")
	}

	clock.Advance(r.Failed - r.Processed)
	sweepAll(s)
	wantExpired(t, s, failed, event.StatusFailed)
	wantKept(t, s, unsettled)

	clock.Advance(10 * 365 * 24 * time.Hour)
	sweepAll(s)
	wantKept(t, s, unsettled) // PUBLISHED events are kept forever by default
	if expired[event.StatusProcessed] != 1 || expired[event.StatusFailed] != 1 || len(expired) != 2 {
		t.Errorf("OnExpire counted %v, want one PROCESSED and one FAILED", expired)
	}
	// Only the unsettled event is left: its body, its status index entry
	// (which holds its first mark; it has no state record) and its sequence.
	for _, c := range []struct {
		bucket []byte
		want   int
	}{
		{bucketEvents, 1}, {bucketState, 0}, {bucketByStatus, 1}, {bucketSequences, 1}, {bucketFinished, 0},
	} {
		if got := keyCount(t, s, c.bucket); got != c.want {
			t.Errorf("bucket %s has %d keys, want %d", c.bucket, got, c.want)
		}
	}
}

func mustGetPayload(t *testing.T, s *Store, id ID) string {
	t.Helper()
	e, err := s.Get(id, true)
	if err != nil {
		t.Fatal(err)
	}
	return string(e.Payload)
}

func TestRetentionPublished(t *testing.T) {
	s, clock := retentionStore(t, func(s *Store) { s.Retention.Published = time.Hour })
	// Published retention counts from creation, which the ID records.
	old := publishedAt(t, s, backdated(t, 2*time.Hour, []byte("old"), ""), 1)
	young := publishedAt(t, s, internalEvent(t, []byte("young"), ""), 2)
	processed := settled(t, s, backdated(t, 2*time.Hour, []byte("p"), ""), 3, event.OutcomeAcked)

	sweepAll(s)
	wantExpired(t, s, old, event.StatusPublished)
	wantKept(t, s, young, processed) // PROCESSED: its own retention applies

	clock.Advance(time.Hour + time.Second)
	sweepAll(s)
	wantExpired(t, s, young, event.StatusPublished)
	if got := keyCount(t, s, bucketSequences); got != 1 {
		t.Errorf("%d sequences entries left, want only the processed event's", got)
	}
}

func TestRetentionDelivered(t *testing.T) {
	s, clock := retentionStore(t, func(s *Store) { s.Retention.Delivered = time.Hour })
	// Handed out, never settled: DELIVERED until the retention runs out.
	stuck := settled(t, s, backdated(t, 2*time.Hour, []byte("stuck"), ""), 1, event.OutcomeDelivered)
	young := settled(t, s, internalEvent(t, []byte("young"), ""), 2, event.OutcomeDelivered)
	published := publishedAt(t, s, backdated(t, 2*time.Hour, []byte("pub"), ""), 3)
	processed := settled(t, s, backdated(t, 2*time.Hour, []byte("p"), ""), 4, event.OutcomeAcked)
	if got := mustGet(t, s, stuck.ID).Status; got != event.StatusDelivered {
		t.Fatalf("stuck event is %s, want DELIVERED", got)
	}

	sweepAll(s)
	wantExpired(t, s, stuck, event.StatusDelivered)
	wantKept(t, s, young, published, processed) // published: 0 keeps PUBLISHED ones

	clock.Advance(time.Hour + time.Second)
	sweepAll(s)
	wantExpired(t, s, young, event.StatusDelivered)
	wantKept(t, s, published)
}

func TestRetentionAfterRedrive(t *testing.T) {
	s, clock := retentionStore(t)
	failedFor := s.Retention.Failed
	e := settled(t, s, internalEvent(t, []byte("p"), ""), 5, event.OutcomeTerminated)
	firstFailure := readStored(t, s, e.ID).FinishedAt
	if firstFailure.IsZero() {
		t.Fatal("a FAILED event has no finished time")
	}

	clock.Advance(failedFor / 2)
	settle(t, s, event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeRedriven, Sequence: 12, Reason: "redrive"})
	if st := readStored(t, s, e.ID); st.Status != event.StatusPublished || !st.FinishedAt.IsZero() {
		t.Fatalf("after redrive: %s finished at %v, want PUBLISHED and not finished", st.Status, st.FinishedAt)
	}
	if n := keyCount(t, s, bucketFinished); n != 0 {
		t.Fatalf("the redrive left %d finished entries, want none", n)
	}

	t.Run("StaleEntryIgnored", func(t *testing.T) {
		// Were the old entry still there, its event no longer matches it.
		err := s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketFinished).Put(finishedKey(event.StatusFailed, firstFailure, e.ID), nil)
		})
		if err != nil {
			t.Fatal(err)
		}
		clock.Advance(failedFor)
		sweepAll(s)
		wantKept(t, s, e)
		if n := keyCount(t, s, bucketFinished); n != 0 {
			t.Errorf("the stale finished entry is still there")
		}
	})

	t.Run("FailsAgain", func(t *testing.T) {
		settle(t, s, event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeTerminated, Deliveries: 1, Sequence: 12})
		clock.Advance(failedFor - time.Minute)
		sweepAll(s)
		wantKept(t, s, e)
		clock.Advance(2 * time.Minute)
		sweepAll(s)
		wantExpired(t, s, e, event.StatusFailed)
		// Its own message (5) and the redrive's (12) are forgotten.
		if n := keyCount(t, s, bucketSequences); n != 0 {
			t.Errorf("%d sequences entries left, want none", n)
		}
	})
}

// TestRetentionKeepsSequenceTakenOver: after a power cut shortened the
// stream, a new event can be published at a sequence an older event still
// records; expiring the older one must not forget the newer one's entry.
func TestRetentionKeepsSequenceTakenOver(t *testing.T) {
	s, clock := retentionStore(t)
	old := settled(t, s, internalEvent(t, []byte("old"), ""), 5, event.OutcomeAcked)
	newer := publishedAt(t, s, internalEvent(t, []byte("new"), ""), 5)
	clock.Advance(s.Retention.Processed + time.Minute)
	sweepAll(s)
	wantExpired(t, s, old, event.StatusProcessed)
	after, err := s.PublishedAfter(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 1 || after[0].ID != newer.ID || after[0].Sequence != 5 {
		t.Errorf("PublishedAfter(0) = %+v, want the newer event at 5", after)
	}
}

func TestRetentionNotFoundMessages(t *testing.T) {
	s, clock := retentionStore(t, func(s *Store) {
		s.Retention.Processed = time.Hour
		s.Retention.Tombstones = 24 * time.Hour
	})
	e := settled(t, s, internalEvent(t, []byte("p"), ""), 1, event.OutcomeAcked)
	clock.Advance(time.Hour + time.Minute)
	sweepAll(s)

	t.Run("Tombstone", func(t *testing.T) {
		wantExpired(t, s, e, event.StatusProcessed)
		_, err := s.Get(e.ID, false)
		on := strings.TrimSuffix(strings.SplitN(err.Error(), " on ", 2)[1], " (it was PROCESSED)")
		at, perr := time.Parse(time.RFC3339, on)
		if perr != nil || clock.Now().Sub(at).Abs() > time.Minute {
			t.Errorf("removal time %q (%v), want RFC 3339 close to %v", on, perr, clock.Now())
		}
	})

	unknown := IDAt(t, time.Now().Add(time.Second))
	wantPlain := func(t *testing.T, id ID) {
		t.Helper()
		_, err := s.Get(id, false)
		if want := fmt.Sprintf("not found: no event with correlation_id %s", id); !errors.Is(err, event.ErrNotFound) || err.Error() != want {
			t.Errorf("Get(unknown) = %v, want %q", err, want)
		}
	}
	t.Run("Unknown", func(t *testing.T) { wantPlain(t, unknown) })

	clock.Advance(24*time.Hour + time.Minute)
	sweepAll(s)
	if n, m := keyCount(t, s, bucketTombstones), keyCount(t, s, bucketTombstoneExpiry); n+m != 0 {
		t.Fatalf("%d tombstones and %d expiry entries left after their TTL", n, m)
	}
	t.Run("Watermark", func(t *testing.T) {
		for _, id := range []ID{e.ID, IDAt(t, time.Now().Add(-365*24*time.Hour))} {
			_, err := s.Get(id, false)
			if !errors.Is(err, event.ErrNotFound) || !strings.Contains(err.Error(), "it is older than the retention window, so it expired or never existed") {
				t.Errorf("Get(%s) = %v, want ErrNotFound saying it is older than the retention window", id, err)
			}
		}
	})
	t.Run("NewerThanWatermark", func(t *testing.T) { wantPlain(t, unknown) })
}

func TestRetentionForgetsIdempotencyKey(t *testing.T) {
	s, clock := retentionStore(t, func(s *Store) { s.Retention.Processed = time.Hour })
	e := settled(t, s, internalEvent(t, []byte("p"), "order-42"), 1, event.OutcomeAcked)
	// "reused" was used by an event past the idempotency TTL, then by a
	// new one; expiring the first must not forget it for the second.
	first := settled(t, s, backdated(t, 2*s.IdempotencyTTL, []byte("first"), "reused"), 2, event.OutcomeAcked)
	second := internalEvent(t, []byte("second"), "reused")
	if _, created, err := s.Append(second, 2); err != nil || !created {
		t.Fatalf("Append with a key past its TTL = %v, %v; want created", created, err)
	}

	clock.Advance(time.Hour + time.Minute)
	sweepAll(s)
	wantExpired(t, s, e, event.StatusProcessed)
	wantExpired(t, s, first, event.StatusProcessed)
	idem, expiry := idemKeys(t, s)
	if _, ok := idem["order-42"]; ok {
		t.Error("the expired event's idempotency key is still remembered")
	}
	if idem["reused"] != second.ID || len(expiry) != 1 || expiry[second.ID] != "reused" {
		t.Errorf("idem %v, expiry %v; want only reused -> %s", idem, expiry, second.ID)
	}
	// The key is free: another body makes a new event, not a conflict.
	again := internalEvent(t, []byte("another body"), "order-42")
	if stored, created, err := s.Append(again, 0); err != nil || !created || stored.ID != again.ID {
		t.Errorf("Append with the expired event's key = %v, %v; want a new event", created, err)
	}
}

func TestRetentionDropProcessedPayloads(t *testing.T) {
	s, _ := retentionStore(t, func(s *Store) { s.Retention.DropProcessedPayloads = true })
	in := internalEvent(t, []byte("big payload"), "k")
	in.Headers = map[string]string{"source": "shop"}
	processed := settled(t, s, in, 1, event.OutcomeAcked)
	failed := settled(t, s, internalEvent(t, []byte("kept"), ""), 2, event.OutcomeTerminated)

	got, err := s.Get(processed.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Payload) != 0 || got.Type != in.Type || got.Headers["source"] != "shop" || got.IdempotencyKey != "k" || !got.CreatedAt.Equal(in.CreatedAt) {
		t.Errorf("processed event = %+v; want it whole but for the payload", got)
	}
	if p := mustGetPayload(t, s, failed.ID); p != "kept" {
		t.Errorf("FAILED event's payload = %q, want it kept for a redrive", p)
	}
	// Publishing it again after a lost stream tail would send an empty event.
	after, err := s.PublishedAfter(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 1 || after[0].ID != failed.ID {
		t.Errorf("PublishedAfter(0) = %+v, want only the failed event", after)
	}
	// A retry with the same key and body still finds it.
	retry := internalEvent(t, []byte("big payload"), "k")
	retry.Headers = in.Headers
	if stored, created, err := s.Append(retry, 0); err != nil || created || stored.ID != processed.ID {
		t.Errorf("idempotent retry = %v, %v; want the processed event", created, err)
	}
}

// TestRetentionBacklogBounded: a backlog of expired events is removed by
// the committer in passes of at most retentionPerTx, with appends committed
// between them.
func TestRetentionBacklogBounded(t *testing.T) {
	var mu sync.Mutex
	var order []string // "expire" and "append" commits, in commit order
	expired, largestPass := 0, 0
	clock := &FakeClock{}
	s := openChecked(t, func(s *Store) {
		s.Now = clock.Now
		s.CleanupInterval = 5 * time.Millisecond
		s.OnExpire = func(_ event.Status, n int) {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, "expire")
			expired += n
			largestPass = max(largestPass, n)
		}
		s.OnCommit = func(c CommitStats) {
			if c.Appends > 0 {
				mu.Lock()
				defer mu.Unlock()
				order = append(order, "append")
			}
		}
	})
	if err := s.SaveGroup(event.DefaultGroup("g")); err != nil {
		t.Fatal(err)
	}
	const n = 5000
	for i, e := range appendConcurrently(t, s, n) {
		seq := uint64(i + 1)
		s.MarkPublished(e.ID, seq, "")
		s.RecordGroup(event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeAcked, Deliveries: 1, Sequence: seq, Time: clock.Now()})
	}
	settle(t, s, event.GroupUpdate{Group: "not-a-group"})
	if got := keyCount(t, s, bucketFinished); got != n {
		t.Fatalf("%d events finished, want %d", got, n)
	}

	var appended atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := s.Append(internalEvent(t, []byte("during"), ""), 0); err != nil {
					t.Errorf("Append during the cleanup: %v", err)
					return
				}
				appended.Add(1)
			}
		})
	}
	clock.Advance(s.Retention.Processed + time.Minute)
	checkFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if expired < n {
			return fmt.Errorf("%d of %d expired", expired, n)
		}
		return nil
	})
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if expired != n || largestPass > retentionPerTx {
		t.Errorf("%d expired, at most %d in one pass; want %d, at most %d", expired, largestPass, n, retentionPerTx)
	}
	passes, between, since := 0, 0, 0 // since: append commits after the last pass seen
	for _, c := range order {
		switch {
		case c == "expire":
			if passes > 0 {
				between += since
			}
			passes, since = passes+1, 0
		case passes > 0:
			since++
		}
	}
	t.Logf("%d passes; %d append commits between the first and the last", passes, between)
	if between == 0 {
		t.Error("no append was committed while the backlog was removed")
	}
	if got := keyCount(t, s, bucketEvents); got != int(appended.Load()) {
		t.Errorf("%d events left, want the %d appended during the cleanup", got, appended.Load())
	}
}

// TestRetentionUpgradeFromSchema1 opens a ledger written by a jsctl without
// retention: schema 1, no retention buckets, version 1 state records. Its
// finished events are indexed by the retention passes and then expire.
func TestRetentionUpgradeFromSchema1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	clock := &FakeClock{}
	s := New(path)
	s.Now = clock.Now
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveGroup(event.DefaultGroup("g")); err != nil {
		t.Fatal(err)
	}
	processed := settled(t, s, internalEvent(t, []byte("p"), ""), 1, event.OutcomeAcked)
	failed := settled(t, s, internalEvent(t, []byte("f"), ""), 2, event.OutcomeTerminated)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	downgradeToSchema1(t, path)
	in, err := Inspect(path)
	if err != nil || len(in.Problems) > 0 || in.Schema != 1 {
		t.Fatalf("Inspect of a schema 1 file = %+v, %v; want schema 1 without problems", in, err)
	}

	s, _ = retentionStore(t, func(s *Store) { s.Path, s.Now = path, clock.Now })
	wantKept(t, s, processed, failed) // version 1 state records
	if got := keyCount(t, s, bucketFinished); got != 0 {
		t.Fatalf("%d finished entries before the first pass", got)
	}
	sweepAll(s)
	if got := keyCount(t, s, bucketFinished); got != 2 {
		t.Fatalf("%d finished entries after the first pass, want 2", got)
	}
	e := mustGet(t, s, processed.ID)
	if st := readStored(t, s, processed.ID); !st.FinishedAt.Equal(e.History[len(e.History)-1].Time) {
		t.Errorf("backfilled finished time %v, want the time of the last transition %v", st.FinishedAt, e.History[len(e.History)-1])
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta).Get(keyFinishedBackfill) != nil {
			return errors.New("the backfill is not marked done")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	clock.Advance(s.Retention.Processed + time.Minute)
	sweepAll(s)
	wantExpired(t, s, processed, event.StatusProcessed)
	wantKept(t, s, failed)
}

func mustGet(t *testing.T, s *Store, id ID) *event.Event {
	t.Helper()
	e, err := s.Get(id, false)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// downgradeToSchema1 rewrites a closed ledger as schema 1 wrote it.
func downgradeToSchema1(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if !slices.ContainsFunc(schema1Buckets, func(b []byte) bool { return bytes.Equal(b, name) }) {
				if err := tx.DeleteBucket(name); err != nil {
					return err
				}
			}
		}
		if err := tx.Bucket(bucketMeta).Put(keySchema, binary.AppendUvarint(nil, 1)); err != nil {
			return err
		}
		states := tx.Bucket(bucketState)
		v1 := map[string][]byte{}
		if err := states.ForEach(func(k, v []byte) error {
			st, err := decodeState(v)
			v1[string(k)] = encodeStateV1(st)
			return err
		}); err != nil {
			return err
		}
		for k, v := range v1 {
			if err := states.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
