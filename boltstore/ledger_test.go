package boltstore_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jsctl/jsctl/boltstore"
	"github.com/jsctl/jsctl/event"
)

func TestAppendGet(t *testing.T) {
	s := openStore(t)
	created := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.FixedZone("CET", 3600))
	e := newEvent(t, "order.created", `{"id":42}`, "order-42")
	e.Headers = map[string]string{"Content-Type": "application/json", "X-Empty": "", "X-Unicode": "Zoë ✓"}
	e.CreatedAt = created
	stored := mustAppend(t, s, e, 17)
	if stored.ID != e.ID {
		t.Fatalf("Append returned ID %s, want %s", stored.ID, e.ID)
	}

	t.Run("OK", func(t *testing.T) {
		got := mustGet(t, s, e.ID, true)
		if got.ID != e.ID {
			t.Errorf("ID = %s, want %s", got.ID, e.ID)
		}
		if got.Type != e.Type {
			t.Errorf("Type = %q, want %q", got.Type, e.Type)
		}
		if !bytes.Equal(got.Payload, e.Payload) {
			t.Errorf("Payload = %q, want %q", got.Payload, e.Payload)
		}
		if !maps.Equal(got.Headers, e.Headers) {
			t.Errorf("Headers = %v, want %v", got.Headers, e.Headers)
		}
		if got.IdempotencyKey != e.IdempotencyKey {
			t.Errorf("IdempotencyKey = %q, want %q", got.IdempotencyKey, e.IdempotencyKey)
		}
		if !got.CreatedAt.Equal(created) || got.CreatedAt.UnixNano() != created.UnixNano() {
			t.Errorf("CreatedAt = %v, want %v", got.CreatedAt, created)
		}
		if got.CreatedAt.Location() != time.UTC {
			t.Errorf("CreatedAt location = %v, want UTC", got.CreatedAt.Location())
		}
		if got.Status != event.StatusAccepted {
			t.Errorf("Status = %s, want ACCEPTED", got.Status)
		}
		if got.Sequence != 0 {
			t.Errorf("Sequence = %d, want 0", got.Sequence)
		}
		wantHistory(t, got, event.Transition{To: event.StatusAccepted})
		if !got.History[0].Time.Equal(created) {
			t.Errorf("History[0].Time = %v, want CreatedAt %v", got.History[0].Time, created)
		}
	})

	t.Run("WithoutPayload", func(t *testing.T) {
		got := mustGet(t, s, e.ID, false)
		if got.Payload != nil {
			t.Errorf("Payload = %q, want nil", got.Payload)
		}
		if got.Type != e.Type || !maps.Equal(got.Headers, e.Headers) || got.Status != event.StatusAccepted {
			t.Errorf("Get without payload = %+v, want the same fields as with payload", got)
		}
	})

	t.Run("ReturnsCopies", func(t *testing.T) {
		// The payload must not alias bbolt's memory or an earlier result.
		a := mustGet(t, s, e.ID, true)
		a.Payload[0] = 'X'
		a.Headers["Content-Type"] = "changed"
		b := mustGet(t, s, e.ID, true)
		if !bytes.Equal(b.Payload, e.Payload) || b.Headers["Content-Type"] != "application/json" {
			t.Errorf("a change to one Get result shows in the next: %q %v", b.Payload, b.Headers)
		}
	})

	t.Run("SurvivesReopen", func(t *testing.T) {
		s := reopen(t, s)
		got := mustGet(t, s, e.ID, true)
		if got.Type != e.Type || !bytes.Equal(got.Payload, e.Payload) || !got.CreatedAt.Equal(created) {
			t.Errorf("after reopen Get = %+v", got)
		}
		pending, err := s.Unpublished()
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) != 1 || pending[0].ID != e.ID || pending[0].Floor != 17 {
			t.Errorf("Unpublished = %+v, want [%s floor 17]", pending, e.ID)
		}
	})
}

func TestAppendMinimal(t *testing.T) {
	s := openStore(t)
	e := newEvent(t, "a", "", "")
	mustAppend(t, s, e, 0)
	got := mustGet(t, s, e.ID, true)
	if got.Type != "a" || len(got.Payload) != 0 || len(got.Headers) != 0 || got.IdempotencyKey != "" {
		t.Fatalf("Get = %+v, want type a and nothing else", got)
	}
}

func TestGet(t *testing.T) {
	s := openStore(t)
	mustAppend(t, s, newEvent(t, "a", "x", ""), 0)

	t.Run("ErrNotFound", func(t *testing.T) {
		id, err := event.NewID()
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Get(id, true)
		if !errors.Is(err, event.ErrNotFound) {
			t.Fatalf("Get(unknown) = %v, want an error wrapping ErrNotFound", err)
		}
		if !strings.Contains(err.Error(), id.String()) {
			t.Errorf("error %q does not name the ID", err)
		}
	})
}

func TestMarkPublished(t *testing.T) {
	s := openStore(t)
	e := newEvent(t, "order.created", "p", "")
	mustAppend(t, s, e, 3)
	other := newEvent(t, "order.created", "q", "")
	mustAppend(t, s, other, 3)

	s.MarkPublished(e.ID, 4, "")
	// No commit can be assumed yet: Get must see the mark at once.
	got := mustGet(t, s, e.ID, false)
	if got.Status != event.StatusPublished || got.Sequence != 4 {
		t.Fatalf("Get right after MarkPublished = %s seq %d, want PUBLISHED seq 4", got.Status, got.Sequence)
	}
	wantHistory(t, got,
		event.Transition{To: event.StatusAccepted},
		event.Transition{From: event.StatusAccepted, To: event.StatusPublished, Sequence: 4})

	pending, err := s.Unpublished()
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 1 || pending[0].ID != other.ID {
		t.Fatalf("Unpublished = %+v, want only %s", pending, other.ID)
	}

	// Close commits the mark.
	s = reopen(t, s)
	got = mustGet(t, s, e.ID, true)
	if got.Status != event.StatusPublished || got.Sequence != 4 {
		t.Fatalf("after reopen = %s seq %d, want PUBLISHED seq 4", got.Status, got.Sequence)
	}
	wantHistory(t, got,
		event.Transition{To: event.StatusAccepted},
		event.Transition{From: event.StatusAccepted, To: event.StatusPublished, Sequence: 4})
	if string(got.Payload) != "p" {
		t.Errorf("Payload after mark = %q, want %q", got.Payload, "p")
	}
	if got := mustGet(t, s, other.ID, false); got.Status != event.StatusAccepted {
		t.Errorf("unmarked event is %s, want ACCEPTED", got.Status)
	}
}

func TestMarkPublishedReason(t *testing.T) {
	clock := &fakeClock{}
	s := openStore(t, func(s *boltstore.Store) { s.Now = clock.Now })
	e := newEvent(t, "a", "p", "")
	mustAppend(t, s, e, 0)
	clock.Advance(time.Hour)
	before := clock.Now()
	s.MarkPublished(e.ID, 9, "recovered: found in stream")
	after := clock.Now()
	s = reopen(t, s)
	got := mustGet(t, s, e.ID, false)
	wantHistory(t, got,
		event.Transition{To: event.StatusAccepted},
		event.Transition{From: event.StatusAccepted, To: event.StatusPublished, Sequence: 9, Reason: "recovered: found in stream"})
	if tm := got.History[1].Time; tm.Before(before.Truncate(0)) || tm.After(after) {
		t.Errorf("transition time %v, want Store.Now() at the mark (%v..%v)", tm, before, after)
	}
}

func TestUnpublishedPublishedAfter(t *testing.T) {
	s := openStore(t)
	const n = 10
	var ids []event.ID
	for i := range n {
		e := newEvent(t, "a", fmt.Sprint(i), "")
		mustAppend(t, s, e, uint64(100+i))
		ids = append(ids, e.ID)
	}
	// Mark the even events at sequences 101, 103, ...
	seqOf := map[event.ID]uint64{}
	for i := 0; i < n; i += 2 {
		seqOf[ids[i]] = uint64(101 + i)
		s.MarkPublished(ids[i], uint64(101+i), "")
	}

	check := func(t *testing.T, s *boltstore.Store) {
		t.Helper()
		pending, err := s.Unpublished()
		if err != nil {
			t.Fatal(err)
		}
		var want []event.Pending
		for i := 1; i < n; i += 2 {
			want = append(want, event.Pending{ID: ids[i], Floor: uint64(100 + i)})
		}
		if !slices.Equal(pending, want) {
			t.Errorf("Unpublished = %+v, want (oldest first) %+v", pending, want)
		}
	}
	t.Run("Unpublished/BeforeCommit", func(t *testing.T) { check(t, s) })

	s = reopen(t, s)
	t.Run("Unpublished/AfterReopen", func(t *testing.T) { check(t, s) })

	for _, after := range []uint64{0, 100, 101, 104, 105, 109, 1000} {
		t.Run(fmt.Sprintf("PublishedAfter/%d", after), func(t *testing.T) {
			got, err := s.PublishedAfter(after)
			if err != nil {
				t.Fatal(err)
			}
			var want []event.Pending
			for i := 0; i < n; i += 2 {
				if seq := seqOf[ids[i]]; seq > after {
					want = append(want, event.Pending{ID: ids[i], Sequence: seq})
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("PublishedAfter(%d) = %+v, want %+v", after, got, want)
			}
		})
	}
}

func TestMarkPublishedAgain(t *testing.T) {
	t.Run("NewSequence", func(t *testing.T) {
		// The stream lost its tail and the event was published again.
		s := openStore(t)
		e := newEvent(t, "a", "p", "")
		mustAppend(t, s, e, 0)
		s.MarkPublished(e.ID, 10, "")
		s = reopen(t, s)
		s.MarkPublished(e.ID, 7, "republished")

		want := []event.Transition{
			{To: event.StatusAccepted},
			{From: event.StatusAccepted, To: event.StatusPublished, Sequence: 10},
			{From: event.StatusPublished, To: event.StatusPublished, Sequence: 7, Reason: "republished"},
		}
		got := mustGet(t, s, e.ID, false)
		if got.Status != event.StatusPublished || got.Sequence != 7 {
			t.Fatalf("before commit = %s seq %d, want PUBLISHED seq 7", got.Status, got.Sequence)
		}
		wantHistory(t, got, want...)

		s = reopen(t, s)
		got = mustGet(t, s, e.ID, false)
		if got.Status != event.StatusPublished || got.Sequence != 7 {
			t.Fatalf("after reopen = %s seq %d, want PUBLISHED seq 7", got.Status, got.Sequence)
		}
		wantHistory(t, got, want...)

		after, err := s.PublishedAfter(0)
		if err != nil {
			t.Fatal(err)
		}
		if want := []event.Pending{{ID: e.ID, Sequence: 7}}; !slices.Equal(after, want) {
			t.Errorf("PublishedAfter(0) = %+v, want %+v (the old sequence 10 must be gone)", after, want)
		}
		if after, err := s.PublishedAfter(7); err != nil || len(after) != 0 {
			t.Errorf("PublishedAfter(7) = %+v, %v; want none", after, err)
		}
	})

	t.Run("SameSequence", func(t *testing.T) {
		s := openStore(t)
		e := newEvent(t, "a", "p", "")
		mustAppend(t, s, e, 0)
		s.MarkPublished(e.ID, 10, "")
		s.MarkPublished(e.ID, 10, "again, pending")
		want := []event.Transition{
			{To: event.StatusAccepted},
			{From: event.StatusAccepted, To: event.StatusPublished, Sequence: 10},
		}
		wantHistory(t, mustGet(t, s, e.ID, false), want...)

		s = reopen(t, s)
		s.MarkPublished(e.ID, 10, "again, committed")
		wantHistory(t, mustGet(t, s, e.ID, false), want...)

		s = reopen(t, s)
		got := mustGet(t, s, e.ID, false)
		wantHistory(t, got, want...)
		if got.Sequence != 10 {
			t.Errorf("Sequence = %d, want 10", got.Sequence)
		}
	})
}

func TestIdempotency(t *testing.T) {
	t.Run("SameBody", func(t *testing.T) {
		s := openStore(t)
		first := newEvent(t, "order.created", "p", "key-1")
		first.Headers = map[string]string{"X-A": "1"}
		mustAppend(t, s, first, 0)

		retry := newEvent(t, "order.created", "p", "key-1")
		retry.Headers = map[string]string{"X-A": "1"}
		stored, created, err := s.Append(retry, 0)
		if err != nil {
			t.Fatalf("Append retry: %v", err)
		}
		if created {
			t.Fatal("Append retry: created=true, want false")
		}
		if stored.ID != first.ID {
			t.Fatalf("Append retry returned %s, want the original %s", stored.ID, first.ID)
		}
		if stored.Status != event.StatusAccepted || string(stored.Payload) != "p" || stored.Type != "order.created" {
			t.Errorf("Append retry returned %+v, want the original ACCEPTED event with its payload", stored)
		}
		if _, err := s.Get(retry.ID, false); !errors.Is(err, event.ErrNotFound) {
			t.Errorf("Get(retry ID) = %v, want ErrNotFound: nothing must be stored for a retry", err)
		}
	})

	t.Run("ErrConflict", func(t *testing.T) {
		s := openStore(t)
		first := newEvent(t, "order.created", "p", "key-1")
		mustAppend(t, s, first, 0)
		for name, other := range map[string]*event.Event{
			"Payload": newEvent(t, "order.created", "q", "key-1"),
			"Type":    newEvent(t, "order.updated", "p", "key-1"),
			"Headers": func() *event.Event {
				e := newEvent(t, "order.created", "p", "key-1")
				e.Headers = map[string]string{"X-A": "1"}
				return e
			}(),
		} {
			t.Run(name, func(t *testing.T) {
				stored, created, err := s.Append(other, 0)
				if !errors.Is(err, event.ErrConflict) {
					t.Fatalf("Append = %v, %v, %v; want an error wrapping ErrConflict", stored, created, err)
				}
				if !strings.Contains(err.Error(), first.ID.String()) {
					t.Errorf("error %q does not name the original event", err)
				}
				if _, err := s.Get(other.ID, false); !errors.Is(err, event.ErrNotFound) {
					t.Errorf("Get(conflicting ID) = %v, want ErrNotFound", err)
				}
			})
		}
	})

	t.Run("OtherKeySameBody", func(t *testing.T) {
		s := openStore(t)
		a := mustAppend(t, s, newEvent(t, "a", "p", "key-1"), 0)
		b := mustAppend(t, s, newEvent(t, "a", "p", "key-2"), 0)
		c := mustAppend(t, s, newEvent(t, "a", "p", ""), 0)
		d := mustAppend(t, s, newEvent(t, "a", "p", ""), 0)
		if ids := []event.ID{a.ID, b.ID, c.ID, d.ID}; len(slices.Compact(slices.Clone(ids))) != 4 {
			t.Errorf("IDs %v are not distinct", ids)
		}
	})

	t.Run("AfterPublish", func(t *testing.T) {
		// A retry after the ack gets the PUBLISHED event, whether or not the
		// mark is committed yet.
		retryAfterMark := func(t *testing.T, s *boltstore.Store, key string, seq uint64, commit bool) {
			t.Helper()
			first := newEvent(t, "a", "p", key)
			mustAppend(t, s, first, 0)
			s.MarkPublished(first.ID, seq, "")
			if commit {
				s = reopen(t, s)
			}
			stored, created, err := s.Append(newEvent(t, "a", "p", key), 0)
			if err != nil || created {
				t.Fatalf("Append retry = %v, %v; want created=false", created, err)
			}
			if stored.ID != first.ID || stored.Status != event.StatusPublished || stored.Sequence != seq {
				t.Fatalf("Append retry = %s %s seq %d; want %s PUBLISHED seq %d", stored.ID, stored.Status, stored.Sequence, first.ID, seq)
			}
			wantHistory(t, stored,
				event.Transition{To: event.StatusAccepted},
				event.Transition{From: event.StatusAccepted, To: event.StatusPublished, Sequence: seq})
		}
		t.Run("MarkCommitted", func(t *testing.T) {
			retryAfterMark(t, openStore(t), "key-1", 5, true)
		})
		t.Run("MarkPending", func(t *testing.T) {
			s := openStore(t)
			for i := range 20 {
				retryAfterMark(t, s, fmt.Sprint("key-", i), uint64(i+1), false)
			}
		})
	})

	t.Run("Concurrent", func(t *testing.T) {
		s := openStore(t)
		const n = 8
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			results [n]struct {
				stored  *event.Event
				created bool
				err     error
			}
		)
		for i := range n {
			e := newEvent(t, "a", "same body", "key-1")
			wg.Go(func() {
				<-start
				r := &results[i]
				r.stored, r.created, r.err = s.Append(e, 0)
			})
		}
		close(start)
		wg.Wait()
		createdN := 0
		for i, r := range results {
			if r.err != nil {
				t.Fatalf("Append %d: %v", i, r.err)
			}
			if r.created {
				createdN++
			}
			if r.stored.ID != results[0].stored.ID {
				t.Errorf("Append %d returned %s, Append 0 returned %s", i, r.stored.ID, results[0].stored.ID)
			}
		}
		if createdN != 1 {
			t.Errorf("%d Appends created the event, want exactly 1", createdN)
		}
		pending, err := s.Unpublished()
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) != 1 || pending[0].ID != results[0].stored.ID {
			t.Errorf("Unpublished = %+v, want only %s", pending, results[0].stored.ID)
		}
	})

	t.Run("Expired", func(t *testing.T) {
		clock := &fakeClock{}
		const ttl = time.Hour
		s := openStore(t, func(s *boltstore.Store) {
			s.Now = clock.Now
			s.IdempotencyTTL = ttl
		})
		first := newEvent(t, "a", "p", "key-1")
		mustAppend(t, s, first, 0)

		// Just inside the TTL the key is still live. IDs carry the real time
		// they were made, so stay well clear of the boundary.
		clock.Advance(ttl - time.Minute)
		if stored, created, err := s.Append(newEvent(t, "a", "p", "key-1"), 0); err != nil || created || stored.ID != first.ID {
			t.Fatalf("Append inside TTL = %v, %v, %v; want the original event", stored, created, err)
		}
		if _, _, err := s.Append(newEvent(t, "a", "other", "key-1"), 0); !errors.Is(err, event.ErrConflict) {
			t.Fatalf("Append inside TTL with another body = %v, want ErrConflict", err)
		}

		// Past the TTL the key is new again, with either body.
		clock.Advance(2 * time.Minute)
		second := newEvent(t, "a", "p", "key-1")
		stored, created, err := s.Append(second, 0)
		if err != nil || !created || stored.ID != second.ID {
			t.Fatalf("Append past TTL = %v, %v, %v; want a new event %s", stored, created, err, second.ID)
		}
		// The key now names the new event. Go back to real time: the new ID
		// carries real time, so under the advanced clock its key is already old.
		clock.Set(0)
		if stored, created, err := s.Append(newEvent(t, "a", "p", "key-1"), 0); err != nil || created || stored.ID != second.ID {
			t.Fatalf("retry of the new event = %v, %v, %v; want %s", stored, created, err, second.ID)
		}
		// Both events are still stored.
		mustGet(t, s, first.ID, true)
		mustGet(t, s, second.ID, true)

		clock.Set(ttl + time.Minute)
		third := newEvent(t, "a", "another body", "key-1")
		if _, created, err := s.Append(third, 0); err != nil || !created {
			t.Fatalf("Append past TTL with another body = %v, %v; want created", created, err)
		}
	})
}

func TestConcurrentAppends(t *testing.T) {
	s := openStore(t)
	const n = 200
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  [n]error
		evs   [n]*event.Event
	)
	for i := range n {
		evs[i] = newEvent(t, "load.test", fmt.Sprintf("payload %d", i), fmt.Sprintf("key-%d", i%150))
		if i >= 150 {
			// Reuse a key with the same body: an idempotent retry in flight.
			evs[i].Payload = []byte(fmt.Sprintf("payload %d", i%150))
		}
	}
	var stored [n]*event.Event
	var createdN atomic.Int32
	for i := range n {
		wg.Go(func() {
			<-start
			var created bool
			stored[i], created, errs[i] = s.Append(evs[i], uint64(i))
			if created {
				createdN.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
	if got := createdN.Load(); got != 150 {
		t.Errorf("%d events created, want 150 (50 were retries)", got)
	}
	for i := range n {
		if want := evs[i%150].Payload; !bytes.Equal(stored[i].Payload, want) {
			t.Errorf("Append %d returned payload %q, want %q", i, stored[i].Payload, want)
		}
		got := mustGet(t, s, stored[i].ID, true)
		if !bytes.Equal(got.Payload, stored[i].Payload) {
			t.Errorf("event %d: Get payload %q, want %q", i, got.Payload, stored[i].Payload)
		}
	}
	pending, err := s.Unpublished()
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 150 {
		t.Errorf("Unpublished has %d events, want 150", len(pending))
	}
	if !slices.IsSortedFunc(pending, func(a, b event.Pending) int { return bytes.Compare(a.ID[:], b.ID[:]) }) {
		t.Error("Unpublished is not oldest first")
	}
	if err := s.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
}
