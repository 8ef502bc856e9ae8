package boltstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/jsctl/jsctl/event"
)

// openInternal opens a Store on a new file in t.TempDir() and closes it on cleanup.
func openInternal(t *testing.T, opts ...func(*Store)) *Store {
	t.Helper()
	s := New(filepath.Join(t.TempDir(), "ledger.db"))
	s.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	for _, o := range opts {
		o(s)
	}
	if err := s.Open(); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// reopenInternal closes s and opens its file again with opts applied; the
// new Store is closed on cleanup.
func reopenInternal(t *testing.T, s *Store, opts ...func(*Store)) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := New(s.Path)
	for _, o := range opts {
		o(s2)
	}
	if err := s2.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	return s2
}

func internalEvent(t *testing.T, payload []byte, key string) *event.Event {
	t.Helper()
	id, err := event.NewID()
	if err != nil {
		t.Fatal(err)
	}
	return &event.Event{ID: id, Type: "a", Payload: payload, IdempotencyKey: key, CreatedAt: time.Now(), Status: event.StatusAccepted}
}

// txID returns the ID of the last committed write transaction: every commit
// adds one.
func txID(t testing.TB, s *Store) int {
	t.Helper()
	var id int
	if err := s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

// appendConcurrently starts n Appends at once and waits for them.
func appendConcurrently(t *testing.T, s *Store, n int) []*event.Event {
	t.Helper()
	evs := make([]*event.Event, n)
	for i := range evs {
		evs[i] = internalEvent(t, []byte(fmt.Sprint(i)), "")
	}
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range evs {
		wg.Go(func() {
			<-start
			_, _, errs[i] = s.Append(evs[i], 0)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
	return evs
}

func TestGroupCommit(t *testing.T) {
	t.Run("OneCommitPerLoneAppend", func(t *testing.T) {
		s := openInternal(t)
		before := txID(t, s)
		const n = 5
		for range n {
			if _, _, err := s.Append(internalEvent(t, []byte("p"), ""), 0); err != nil {
				t.Fatal(err)
			}
		}
		if commits := txID(t, s) - before; commits != n {
			t.Errorf("%d sequential appends took %d commits, want %d", n, commits, n)
		}
	})

	t.Run("ConcurrentAppendsShareCommits", func(t *testing.T) {
		s := openInternal(t)
		before := txID(t, s)
		const n = 200
		evs := appendConcurrently(t, s, n)
		commits := txID(t, s) - before
		t.Logf("%d concurrent appends took %d commits", n, commits)
		// While one commit fsyncs, the others queue for the next: far fewer
		// commits than appends.
		if commits < 1 || commits > n/4 {
			t.Errorf("%d concurrent appends took %d commits, want between 1 and %d", n, commits, n/4)
		}
		for i, e := range evs {
			got, err := s.Get(e.ID, true)
			if err != nil {
				t.Fatalf("Get %d: %v", i, err)
			}
			if !bytes.Equal(got.Payload, e.Payload) {
				t.Errorf("event %d payload %q, want %q", i, got.Payload, e.Payload)
			}
		}
	})

	t.Run("MaxBatch", func(t *testing.T) {
		s := openInternal(t, func(s *Store) { s.MaxBatch = 4 })
		before := txID(t, s)
		const n = 64
		evs := appendConcurrently(t, s, n)
		if commits := txID(t, s) - before; commits < n/4 {
			t.Errorf("%d appends took %d commits with MaxBatch 4, want at least %d", n, commits, n/4)
		}
		for _, e := range evs {
			if _, err := s.Get(e.ID, false); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("MarksRideAlong", func(t *testing.T) {
		s := openInternal(t)
		e := internalEvent(t, []byte("p"), "")
		if _, _, err := s.Append(e, 0); err != nil {
			t.Fatal(err)
		}
		s.MarkPublished(e.ID, 1, "")
		// An Append after the mark commits in the same round as the mark or
		// a later one, so once it returns the mark is in the file.
		if _, _, err := s.Append(internalEvent(t, []byte("q"), ""), 0); err != nil {
			t.Fatal(err)
		}
		after, err := s.PublishedAfter(0)
		if err != nil {
			t.Fatal(err)
		}
		if len(after) != 1 || after[0].ID != e.ID || after[0].Sequence != 1 {
			t.Errorf("PublishedAfter(0) = %+v, want the marked event at 1", after)
		}
	})
}

// backdated returns an event whose ID says it was made age ago.
func backdated(t *testing.T, age time.Duration, payload []byte, key string) *event.Event {
	t.Helper()
	e := internalEvent(t, payload, key)
	e.ID = IDAt(t, time.Now().Add(-age))
	if d := time.Since(e.ID.Time()); d < age || d > age+time.Second {
		t.Fatalf("backdated ID is %v old, want %v", d, age)
	}
	return e
}

// idemKeys returns the idem and idem_expiry buckets.
func idemKeys(t *testing.T, s *Store) (idem map[string]ID, expiry map[ID]string) {
	t.Helper()
	idem, expiry = map[string]ID{}, map[ID]string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketIdem).ForEach(func(k, v []byte) error {
			idem[string(k)] = ID(v[:16])
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketIdemExpiry).ForEach(func(k, v []byte) error {
			expiry[ID(k)] = string(v)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return idem, expiry
}

func TestExpireIdempotencyKeys(t *testing.T) {
	const ttl = time.Hour
	s := openInternal(t, func(s *Store) {
		s.IdempotencyTTL = ttl
		s.CleanupInterval = 10 * time.Millisecond
	})
	old := backdated(t, 2*ttl, []byte("p"), "old-key")
	fresh := internalEvent(t, []byte("p"), "fresh-key")
	for _, e := range []*event.Event{old, fresh} {
		if _, _, err := s.Append(e, 0); err != nil {
			t.Fatal(err)
		}
	}

	// The cleanup runs every 10ms.
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		idem, expiry := idemKeys(t, s)
		if _, ok := idem["old-key"]; ok {
			return errors.New("old-key is still remembered")
		}
		if _, ok := expiry[old.ID]; ok {
			return errors.New("old event's expiry entry is still there")
		}
		return nil
	})
	idem, expiry := idemKeys(t, s)
	if idem["fresh-key"] != fresh.ID || expiry[fresh.ID] != "fresh-key" {
		t.Errorf("fresh-key was expired too: idem %v expiry %v", idem, expiry)
	}
	if _, err := s.Get(old.ID, true); err != nil {
		t.Errorf("Get of an event whose key expired: %v", err)
	}

	// The expired key can be used again, with another body.
	again := internalEvent(t, []byte("another body"), "old-key")
	if _, created, err := s.Append(again, 0); err != nil || !created {
		t.Fatalf("Append with an expired key = %v, %v; want created", created, err)
	}
	if _, _, err := s.Append(internalEvent(t, []byte("q"), "fresh-key"), 0); !errors.Is(err, event.ErrConflict) {
		t.Errorf("Append with the live fresh-key and another body = %v, want ErrConflict", err)
	}
}

func TestExpireKeepsReusedKey(t *testing.T) {
	// A key reused after its TTL, before the cleanup ran, names the new event;
	// expiring the old event's entry must not forget it.
	const ttl = time.Hour
	s := openInternal(t, func(s *Store) {
		s.IdempotencyTTL = ttl
		s.CleanupInterval = time.Hour // expireIdempotencyKeys is called by hand
	})
	first := backdated(t, 2*ttl, []byte("p"), "key")
	if _, _, err := s.Append(first, 0); err != nil {
		t.Fatal(err)
	}
	second := internalEvent(t, []byte("p"), "key")
	if _, created, err := s.Append(second, 0); err != nil || !created {
		t.Fatalf("Append past TTL = %v, %v; want created", created, err)
	}
	if more := s.expireIdempotencyKeys(); more {
		t.Error("expireIdempotencyKeys reported more to do")
	}
	idem, expiry := idemKeys(t, s)
	if idem["key"] != second.ID {
		t.Errorf("key names %s, want %s", idem["key"], second.ID)
	}
	if _, ok := expiry[first.ID]; ok || expiry[second.ID] != "key" {
		t.Errorf("expiry = %v, want only %s", expiry, second.ID)
	}
	stored, created, err := s.Append(internalEvent(t, []byte("p"), "key"), 0)
	if err != nil || created || stored.ID != second.ID {
		t.Fatalf("retry = %v, %v, %v; want %s", stored, created, err, second.ID)
	}
}

func TestExpireBounded(t *testing.T) {
	// One pass forgets at most 1000 keys and says when more are due.
	const ttl = time.Hour
	s := openInternal(t, func(s *Store) {
		s.IdempotencyTTL = ttl
		s.CleanupInterval = time.Hour // expireIdempotencyKeys is called by hand
	})
	const n = 1500
	evs := make([]*event.Event, n)
	for i := range evs {
		evs[i] = backdated(t, 2*ttl, []byte("p"), fmt.Sprint("key-", i))
	}
	var wg sync.WaitGroup
	for _, e := range evs {
		wg.Go(func() {
			if _, _, err := s.Append(e, 0); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if more := s.expireIdempotencyKeys(); !more {
		t.Error("first pass over 1500 due keys reported nothing more to do")
	}
	if idem, _ := idemKeys(t, s); len(idem) != n-1000 {
		t.Errorf("%d keys left after one pass, want %d", len(idem), n-1000)
	}
	if more := s.expireIdempotencyKeys(); more {
		t.Error("second pass reported more to do")
	}
	if idem, expiry := idemKeys(t, s); len(idem) != 0 || len(expiry) != 0 {
		t.Errorf("%d keys and %d expiry entries left, want none", len(idem), len(expiry))
	}
}

func TestMaxSize(t *testing.T) {
	const maxSize = 1 << 20
	s := openInternal(t, func(s *Store) { s.MaxSize = maxSize })
	payload := bytes.Repeat([]byte("x"), 64<<10)
	var stored []*event.Event
	var full *event.Event
	for range 100 {
		e := internalEvent(t, payload, "")
		_, _, err := s.Append(e, 0)
		if errors.Is(err, event.ErrFull) {
			full = e
			break
		}
		if err != nil {
			t.Fatalf("Append %d: %v", len(stored), err)
		}
		stored = append(stored, e)
	}
	if full == nil {
		t.Fatalf("100 appends of 64 KiB fit in a MaxSize of %d", maxSize)
	}
	if len(stored) == 0 {
		t.Fatal("the first append already failed with ErrFull")
	}
	t.Logf("%d appends of 64 KiB stored before ErrFull", len(stored))

	var used int64
	if err := s.db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil }); err != nil {
		t.Fatal(err)
	}
	if used > maxSize {
		t.Errorf("ledger uses %d bytes of pages, over MaxSize %d", used, maxSize)
	}

	if _, err := s.Get(full.ID, false); !errors.Is(err, event.ErrNotFound) {
		t.Errorf("Get of the event that did not fit = %v, want ErrNotFound", err)
	}
	for i, e := range stored {
		got, err := s.Get(e.ID, true)
		if err != nil {
			t.Fatalf("Get %d: %v", i, err)
		}
		if !bytes.Equal(got.Payload, payload) {
			t.Fatalf("event %d payload is %d bytes, want %d", i, len(got.Payload), len(payload))
		}
	}
	if err := s.Check(); err != nil {
		t.Errorf("Check after ErrFull: %v", err)
	}
	// Still full: the same append fails again rather than hanging or panicking.
	if _, _, err := s.Append(internalEvent(t, payload, ""), 0); !errors.Is(err, event.ErrFull) {
		t.Errorf("second Append when full = %v, want ErrFull", err)
	}
	// A failed commit does not lose earlier marks.
	s.MarkPublished(stored[0].ID, 1, "")
	s2 := reopenInternal(t, s, func(s *Store) { s.MaxSize = maxSize })
	got, err := s2.Get(stored[0].ID, false)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != event.StatusPublished {
		t.Errorf("after reopen status %s, want PUBLISHED", got.Status)
	}
	if err := s2.Check(); err != nil {
		t.Errorf("Check after reopen: %v", err)
	}
}

func TestCloseWhenFull(t *testing.T) {
	s := New(filepath.Join(t.TempDir(), "ledger.db"))
	s.Logger = slog.New(slog.DiscardHandler)
	s.MaxSize = 1 << 20
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	// Fill the file tightly, then mark every event with a reason too large
	// for the space left.
	var ids []ID
	for _, size := range []int{64 << 10, 4 << 10, 256} {
		for {
			e := internalEvent(t, bytes.Repeat([]byte("x"), size), "")
			_, _, err := s.Append(e, 0)
			if errors.Is(err, event.ErrFull) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, e.ID)
		}
	}
	reason := strings.Repeat("r", 2048)
	for i, id := range ids {
		s.MarkPublished(id, uint64(i+1), reason)
	}
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close has not returned after 5s")
	}
}

func TestOpenSchemaMismatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put(keySchema, binary.AppendUvarint(nil, schemaVersion+1))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := New(path)
	err = s.Open()
	if err == nil {
		s.Close()
		t.Fatal("Open of a ledger with a newer schema succeeded")
	}
	if want := fmt.Sprintf("schema version %d", schemaVersion+1); !strings.Contains(err.Error(), want) {
		t.Errorf("Open = %v, want it to name the schema version", err)
	}
	// The file is released.
	s2 := New(path)
	s2.LockTimeout = 100 * time.Millisecond
	if err := s2.Open(); errors.Is(err, event.ErrLocked) {
		t.Errorf("file still locked after failed Open: %v", err)
	} else if err == nil {
		s2.Close()
	}

	t.Run("CloseAfterFailedOpen", func(t *testing.T) {
		if err := s.Close(); err != nil {
			t.Errorf("Close after failed Open: %v", err)
		}
	})
}

// checkFor calls f every interval until it returns nil, and fails the test
// with f's last error after total.
func checkFor(t *testing.T, total, interval time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", total, err)
		}
		<-tick.C
	}
}

func TestCommitStats(t *testing.T) {
	var mu sync.Mutex
	var stats []CommitStats
	s := openInternal(t, func(s *Store) {
		s.OnCommit = func(c CommitStats) {
			mu.Lock()
			stats = append(stats, c)
			mu.Unlock()
		}
	})
	appendConcurrently(t, s, 50)
	mu.Lock()
	defer mu.Unlock()
	appends := 0
	for _, c := range stats {
		appends += c.Appends
		// At least a leaf of the events bucket, the root and the meta page.
		if c.Appends > 0 && (c.Pages < 3 || c.WriteTime <= 0 || c.WriteTime > c.Took) {
			t.Errorf("commit of %d appends: %d pages, write %v of %v", c.Appends, c.Pages, c.WriteTime, c.Took)
		}
	}
	if appends != 50 {
		t.Errorf("commits report %d appends, want 50", appends)
	}
}
