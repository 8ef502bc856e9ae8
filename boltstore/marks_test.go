package boltstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/jsctl/jsctl/event"
)

// waitMarks polls until no mark is pending, or fails after d.
func waitMarks(t *testing.T, s *Store, d time.Duration) {
	t.Helper()
	checkFor(t, d, time.Millisecond, func() error {
		if n := s.PendingMarks(); n > 0 {
			return fmt.Errorf("%d marks still pending", n)
		}
		return nil
	})
}

// markAll appends n events and marks them PUBLISHED at sequences 1..n.
func markAll(t *testing.T, s *Store, n int) []*event.Event {
	t.Helper()
	evs := appendConcurrently(t, s, n)
	for i, e := range evs {
		s.MarkPublished(e.ID, uint64(i+1), "")
	}
	return evs
}

func TestMarksWaitForLaterCommit(t *testing.T) {
	s := openInternal(t, func(s *Store) { s.MarkDelay, s.MarkBatch = time.Hour, 1000 })
	evs := markAll(t, s, 10)
	// An append commits; the marks are not due, so they stay queued...
	before := txID(t, s)
	appendConcurrently(t, s, 1)
	if got := txID(t, s); got != before+1 {
		t.Fatalf("one append made %d commits", got-before)
	}
	if got := s.PendingMarks(); got != 10 {
		t.Fatalf("%d marks pending after an append commit, want all 10 still waiting", got)
	}
	// ...yet reads see them.
	for i, e := range evs {
		got, err := s.Get(e.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != event.StatusPublished || got.Sequence != uint64(i+1) {
			t.Fatalf("event %d: %s at %d, want PUBLISHED at %d", i, got.Status, got.Sequence, i+1)
		}
	}
	if un, err := s.Unpublished(); err != nil || len(un) != 1 {
		t.Fatalf("Unpublished = %d events, %v; want only the unmarked one", len(un), err)
	}
	// A consumer outcome is written at the next commit, and the marks
	// queued before it go with it, in order.
	s.RecordGroup(event.GroupUpdate{ID: evs[0].ID, Group: "not-a-group", Outcome: event.OutcomeDelivered, Deliveries: 1, Sequence: 1})
	waitMarks(t, s, 5*time.Second)
}

func TestMarksDueAfterDelay(t *testing.T) {
	s := openInternal(t, func(s *Store) { s.MarkDelay, s.MarkBatch = 20*time.Millisecond, 1000 })
	markAll(t, s, 3)
	// Nothing else happens: the committer's timer writes them.
	waitMarks(t, s, 5*time.Second)
}

func TestMarksDueAtBatch(t *testing.T) {
	s := openInternal(t, func(s *Store) { s.MarkDelay, s.MarkBatch = time.Hour, 8 })
	markAll(t, s, 8)
	waitMarks(t, s, 5*time.Second)
}

func TestMarksWrittenAtClose(t *testing.T) {
	s := openInternal(t, func(s *Store) { s.MarkDelay, s.MarkBatch = time.Hour, 1000 })
	evs := markAll(t, s, 5)
	s2 := reopenInternal(t, s)
	for i, e := range evs {
		got, err := s2.Get(e.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != event.StatusPublished || got.Sequence != uint64(i+1) {
			t.Errorf("after reopen event %d: %s at %d, want PUBLISHED at %d", i, got.Status, got.Sequence, i+1)
		}
	}
}
