package boltstore_test

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jsctl/jsctl/boltstore"
	"github.com/jsctl/jsctl/event"
)

// saveGroup stores a default group with the given start and filters.
func saveGroup(t *testing.T, s *boltstore.Store, name string, start uint64, filters ...string) event.Group {
	t.Helper()
	g := event.DefaultGroup(name)
	g.Filters = filters
	g.StartSequence = start
	g.CreatedAt = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.SaveGroup(g); err != nil {
		t.Fatalf("SaveGroup(%s): %v", name, err)
	}
	return g
}

// record records u and waits until it is durable.
func record(t *testing.T, s *boltstore.Store, u event.GroupUpdate) {
	t.Helper()
	if err := s.RecordGroupSync(t.Context(), u); err != nil {
		t.Fatalf("RecordGroupSync(%+v): %v", u, err)
	}
}

// flush returns once every update queued before it is committed. Updates are
// applied in order, so a synchronous update that changes nothing (no event,
// no known group) is a barrier.
func flush(t *testing.T, s *boltstore.Store) {
	t.Helper()
	record(t, s, event.GroupUpdate{Group: "flush-barrier-not-a-group"})
}

// step is a transition without its time.
type step struct {
	From, To   event.Status
	Group      string
	Deliveries uint32
	Sequence   uint64
	Reason     string
}

func steps(e *event.Event) []step {
	out := make([]step, len(e.History))
	for i, h := range e.History {
		out[i] = step{h.From, h.To, h.Group, h.Deliveries, h.Sequence, h.Reason}
	}
	return out
}

func wantSteps(t *testing.T, e *event.Event, want ...step) {
	t.Helper()
	if got := steps(e); !slices.Equal(got, want) {
		t.Errorf("history:\n got  %+v\n want %+v", got, want)
	}
}

// wantGroups checks e.Groups, ignoring UpdatedAt. A zero Sequence in want is
// not checked: groups that have not seen the event yet report none.
func wantGroups(t *testing.T, e *event.Event, want ...event.GroupStatus) {
	t.Helper()
	got := slices.Clone(e.Groups)
	for i := range got {
		got[i].UpdatedAt = time.Time{}
		if i < len(want) && want[i].Sequence == 0 {
			got[i].Sequence = 0
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("groups:\n got  %+v\n want %+v", got, want)
	}
}

// published appends a new event of type typ and marks it published at seq.
func published(t *testing.T, s *boltstore.Store, typ string, seq uint64) *event.Event {
	t.Helper()
	e := newEvent(t, typ, "p", "")
	mustAppend(t, s, e, seq-1)
	s.MarkPublished(e.ID, seq, "")
	return e
}

// The transitions every published event starts with.
func publishedSteps(seq uint64) []step {
	return []step{
		{To: event.StatusAccepted},
		{From: event.StatusAccepted, To: event.StatusPublished, Sequence: seq},
	}
}

func TestSaveGroup(t *testing.T) {
	s := openStore(t)
	created := time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)
	orders := event.Group{
		Name:          "orders",
		Filters:       []string{"order.>", "*.created"},
		MaxDeliveries: 7,
		AckWait:       45 * time.Second,
		Backoff:       []time.Duration{time.Second, 10 * time.Second, time.Minute},
		MaxAckPending: 12,
		StartSequence: 1234567,
		CreatedAt:     created,
	}
	all := event.DefaultGroup("all")
	all.CreatedAt = created.Add(time.Hour)
	for _, g := range []event.Group{orders, all} {
		if err := s.SaveGroup(g); err != nil {
			t.Fatalf("SaveGroup(%s): %v", g.Name, err)
		}
	}

	check := func(t *testing.T, s *boltstore.Store, want ...event.Group) {
		t.Helper()
		for _, w := range want {
			g, ok := s.Group(w.Name)
			if !ok {
				t.Fatalf("Group(%s) not found", w.Name)
			}
			wantGroup(t, g, w)
		}
		got := s.Groups()
		if len(got) != len(want) {
			t.Fatalf("Groups() has %d groups, want %d: %+v", len(got), len(want), got)
		}
		for i := range want {
			wantGroup(t, got[i], want[i])
		}
		if _, ok := s.Group("missing"); ok {
			t.Errorf("Group(missing) found")
		}
	}

	t.Run("OK", func(t *testing.T) { check(t, s, all, orders) })

	t.Run("Update", func(t *testing.T) {
		changed := orders
		changed.Filters = []string{"order.created"}
		changed.Backoff = nil
		changed.MaxDeliveries = 2
		if err := s.SaveGroup(changed); err != nil {
			t.Fatal(err)
		}
		check(t, s, all, changed)
		orders = changed
	})

	t.Run("Reopen", func(t *testing.T) {
		s := reopen(t, s)
		check(t, s, all, orders)
	})
}

func wantGroup(t *testing.T, got, want event.Group) {
	t.Helper()
	if got.Name != want.Name || !slices.Equal(got.Filters, want.Filters) || got.MaxDeliveries != want.MaxDeliveries ||
		got.AckWait != want.AckWait || !slices.Equal(got.Backoff, want.Backoff) || got.MaxAckPending != want.MaxAckPending ||
		got.StartSequence != want.StartSequence || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("group %s:\n got  %+v\n want %+v", want.Name, got, want)
	}
}

func TestRecordGroupSync(t *testing.T) {
	s := openStore(t)
	saveGroup(t, s, "g", 0)
	e := published(t, s, "order.created", 5)
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)

	delivered := step{From: event.StatusPublished, To: event.StatusDelivered, Group: "g", Deliveries: 1, Sequence: 5}
	overallDelivered := step{From: event.StatusPublished, To: event.StatusDelivered}
	acked := step{From: event.StatusDelivered, To: event.StatusProcessed, Group: "g", Deliveries: 1, Sequence: 5}
	overallProcessed := step{From: event.StatusDelivered, To: event.StatusProcessed, Reason: "processed by every interested group"}

	t.Run("Delivered", func(t *testing.T) {
		record(t, s, event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeDelivered, Deliveries: 1, Sequence: 5, Time: at})
		got := mustGet(t, s, e.ID, false)
		if got.Status != event.StatusDelivered || got.Sequence != 5 {
			t.Errorf("after Delivered: %s seq %d, want DELIVERED seq 5", got.Status, got.Sequence)
		}
		wantGroups(t, got, event.GroupStatus{Group: "g", Status: event.StatusDelivered, Deliveries: 1, Sequence: 5})
		if len(got.Groups) == 1 && !got.Groups[0].UpdatedAt.Equal(at) {
			t.Errorf("UpdatedAt = %v, want the update's time %v", got.Groups[0].UpdatedAt, at)
		}
		wantSteps(t, got, append(publishedSteps(5), delivered, overallDelivered)...)
	})

	t.Run("Acked", func(t *testing.T) {
		record(t, s, event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeAcked, Deliveries: 1, Sequence: 5, Time: at.Add(time.Second)})
		got := mustGet(t, s, e.ID, false)
		if got.Status != event.StatusProcessed {
			t.Errorf("after Acked: %s, want PROCESSED", got.Status)
		}
		wantGroups(t, got, event.GroupStatus{Group: "g", Status: event.StatusProcessed, Deliveries: 1, Sequence: 5})
		wantSteps(t, got, append(publishedSteps(5), delivered, overallDelivered, acked, overallProcessed)...)
	})

	t.Run("NeverBackwards", func(t *testing.T) {
		for _, u := range []event.GroupUpdate{
			{Outcome: event.OutcomeDelivered, Deliveries: 2},
			{Outcome: event.OutcomeNaked, Deliveries: 2, Reason: "late nak"},
			{Outcome: event.OutcomeTerminated, Deliveries: 2, Reason: "late terminate"},
			{Outcome: event.OutcomeExhausted, Deliveries: 5},
			{Outcome: event.OutcomeAcked, Deliveries: 3},
		} {
			u.ID, u.Group, u.Sequence, u.Time = e.ID, "g", 5, at.Add(time.Minute)
			record(t, s, u)
		}
		got := mustGet(t, s, e.ID, false)
		if got.Status != event.StatusProcessed {
			t.Errorf("status = %s, want PROCESSED", got.Status)
		}
		wantGroups(t, got, event.GroupStatus{Group: "g", Status: event.StatusProcessed, Deliveries: 1, Sequence: 5})
		wantSteps(t, got, append(publishedSteps(5), delivered, overallDelivered, acked, overallProcessed)...)
	})

	t.Run("Reopen", func(t *testing.T) {
		s := reopen(t, s)
		got := mustGet(t, s, e.ID, false)
		if got.Status != event.StatusProcessed {
			t.Errorf("status after reopen = %s, want PROCESSED", got.Status)
		}
		wantGroups(t, got, event.GroupStatus{Group: "g", Status: event.StatusProcessed, Deliveries: 1, Sequence: 5})
		wantSteps(t, got, append(publishedSteps(5), delivered, overallDelivered, acked, overallProcessed)...)
	})
}

// TestRecordGroupSyncMany: outcomes recorded in one call share one commit
// and are all durable when it returns.
func TestRecordGroupSyncMany(t *testing.T) {
	var mu sync.Mutex
	var commits []int // updates per commit
	s := openStore(t, func(s *boltstore.Store) {
		s.OnCommit = func(c boltstore.CommitStats) {
			mu.Lock()
			commits = append(commits, c.Updates)
			mu.Unlock()
		}
	})
	saveGroup(t, s, "g", 0)
	var us []event.GroupUpdate
	for seq := uint64(1); seq <= 3; seq++ {
		e := published(t, s, "a", seq)
		us = append(us, event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeAcked, Deliveries: 1, Sequence: seq, Time: time.Now()})
	}
	flush(t, s) // the marks
	mu.Lock()
	commits = nil
	mu.Unlock()

	if err := s.RecordGroupSync(t.Context(), us...); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := slices.Clone(commits)
	mu.Unlock()
	if !slices.Equal(got, []int{3}) {
		t.Errorf("commits of RecordGroupSync with 3 updates: %v updates each, want one commit of 3", got)
	}
	s = reopen(t, s)
	for _, u := range us {
		if got := mustGet(t, s, u.ID, false); got.Status != event.StatusProcessed {
			t.Errorf("event %d after reopen: %s, want PROCESSED", u.Sequence, got.Status)
		}
	}
	if err := s.RecordGroupSync(t.Context()); err != nil {
		t.Errorf("RecordGroupSync with no updates: %v", err)
	}
}

func TestRecordGroupSyncClosed(t *testing.T) {
	s := openStore(t)
	saveGroup(t, s, "g", 0)
	e := published(t, s, "a", 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	err := s.RecordGroupSync(t.Context(), event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeAcked, Deliveries: 1, Sequence: 1})
	if !errors.Is(err, event.ErrUnavailable) {
		t.Errorf("RecordGroupSync after Close = %v, want ErrUnavailable", err)
	}
}

func TestRecordGroupQueued(t *testing.T) {
	s := openStore(t)
	saveGroup(t, s, "g", 0)
	e := published(t, s, "a", 3)
	s.RecordGroup(event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeDelivered, Deliveries: 1, Sequence: 3})
	s.RecordGroup(event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeAcked, Deliveries: 1, Sequence: 3})
	flush(t, s)
	got := mustGet(t, s, e.ID, false)
	if got.Status != event.StatusProcessed {
		t.Errorf("status = %s, want PROCESSED", got.Status)
	}
	wantGroups(t, got, event.GroupStatus{Group: "g", Status: event.StatusProcessed, Deliveries: 1, Sequence: 3})
}

func TestRecordGroupTwoGroups(t *testing.T) {
	s := openStore(t)
	saveGroup(t, s, "g1", 0)
	saveGroup(t, s, "g2", 0, "order.>")
	saveGroup(t, s, "users", 0, "user.>") // does not match: takes no part
	e := published(t, s, "order.created", 5)

	t.Run("Untouched", func(t *testing.T) {
		got := mustGet(t, s, e.ID, false)
		if got.Status != event.StatusPublished {
			t.Errorf("status = %s, want PUBLISHED", got.Status)
		}
		wantGroups(t, got,
			event.GroupStatus{Group: "g1", Status: event.StatusPublished},
			event.GroupStatus{Group: "g2", Status: event.StatusPublished})
	})

	t.Run("OneAcked", func(t *testing.T) {
		record(t, s, event.GroupUpdate{ID: e.ID, Group: "g1", Outcome: event.OutcomeAcked, Deliveries: 1, Sequence: 5})
		got := mustGet(t, s, e.ID, false)
		if got.Status != event.StatusDelivered {
			t.Errorf("status = %s, want DELIVERED (one of two groups processed)", got.Status)
		}
		wantGroups(t, got,
			event.GroupStatus{Group: "g1", Status: event.StatusProcessed, Deliveries: 1, Sequence: 5},
			event.GroupStatus{Group: "g2", Status: event.StatusPublished})
		wantSteps(t, got, append(publishedSteps(5),
			step{From: event.StatusPublished, To: event.StatusProcessed, Group: "g1", Deliveries: 1, Sequence: 5},
			step{From: event.StatusPublished, To: event.StatusDelivered})...)
	})

	t.Run("OtherTerminated", func(t *testing.T) {
		record(t, s, event.GroupUpdate{ID: e.ID, Group: "g2", Outcome: event.OutcomeTerminated, Deliveries: 2, Sequence: 5, Reason: "bad payload"})
		got := mustGet(t, s, e.ID, false)
		if got.Status != event.StatusFailed {
			t.Errorf("status = %s, want FAILED", got.Status)
		}
		wantGroups(t, got,
			event.GroupStatus{Group: "g1", Status: event.StatusProcessed, Deliveries: 1, Sequence: 5},
			event.GroupStatus{Group: "g2", Status: event.StatusFailed, Deliveries: 2, Sequence: 5, LastReason: "bad payload"})
		wantSteps(t, got, append(publishedSteps(5),
			step{From: event.StatusPublished, To: event.StatusProcessed, Group: "g1", Deliveries: 1, Sequence: 5},
			step{From: event.StatusPublished, To: event.StatusDelivered},
			step{From: event.StatusPublished, To: event.StatusFailed, Group: "g2", Deliveries: 2, Sequence: 5, Reason: "bad payload"},
			step{From: event.StatusDelivered, To: event.StatusFailed, Reason: "failed in group g2"})...)
	})
}

func TestRecordGroupNotInterested(t *testing.T) {
	s := openStore(t)
	saveGroup(t, s, "old", 0)
	e := published(t, s, "order.created", 5)
	saveGroup(t, s, "late", 5) // created when the stream ended at the event

	got := mustGet(t, s, e.ID, false)
	wantGroups(t, got, event.GroupStatus{Group: "old", Status: event.StatusPublished})

	t.Run("UnknownGroupIgnored", func(t *testing.T) {
		record(t, s, event.GroupUpdate{ID: e.ID, Group: "unknown", Outcome: event.OutcomeTerminated, Deliveries: 1, Sequence: 5, Reason: "x"})
		got := mustGet(t, s, e.ID, false)
		if got.Status != event.StatusPublished {
			t.Errorf("status = %s, want PUBLISHED", got.Status)
		}
		wantGroups(t, got, event.GroupStatus{Group: "old", Status: event.StatusPublished})
		wantSteps(t, got, publishedSteps(5)...)
	})

	t.Run("LateGroupDoesNotMoveStatus", func(t *testing.T) {
		record(t, s, event.GroupUpdate{ID: e.ID, Group: "late", Outcome: event.OutcomeTerminated, Deliveries: 1, Sequence: 5, Reason: "x"})
		got := mustGet(t, s, e.ID, false)
		if got.Status != event.StatusPublished {
			t.Errorf("status = %s, want PUBLISHED: a group created after the event takes no part in its status", got.Status)
		}
		i := slices.IndexFunc(got.Groups, func(g event.GroupStatus) bool { return g.Group == "old" })
		if i < 0 || got.Groups[i].Status != event.StatusPublished {
			t.Errorf("groups = %+v, want old PUBLISHED", got.Groups)
		}
	})
}

func TestRecordGroupNaked(t *testing.T) {
	s := openStore(t)
	saveGroup(t, s, "g", 0)
	e := published(t, s, "a", 5)
	u := event.GroupUpdate{ID: e.ID, Group: "g", Sequence: 5}
	deliver := func(n uint32) {
		u := u
		u.Outcome, u.Deliveries = event.OutcomeDelivered, n
		record(t, s, u)
	}
	nak := func(n uint32, reason string) {
		u := u
		u.Outcome, u.Deliveries, u.Reason = event.OutcomeNaked, n, reason
		record(t, s, u)
	}

	deliver(1)
	nak(1, "busy")
	nak(1, "busy") // reported twice: by the subscriber and by the advisory
	nak(1, "")
	want := append(publishedSteps(5),
		step{From: event.StatusPublished, To: event.StatusDelivered, Group: "g", Deliveries: 1, Sequence: 5},
		step{From: event.StatusPublished, To: event.StatusDelivered},
		step{From: event.StatusDelivered, To: event.StatusDelivered, Group: "g", Deliveries: 1, Sequence: 5, Reason: "nak: busy"})
	t.Run("SameDelivery", func(t *testing.T) {
		got := mustGet(t, s, e.ID, false)
		wantSteps(t, got, want...)
		wantGroups(t, got, event.GroupStatus{Group: "g", Status: event.StatusDelivered, Deliveries: 1, Sequence: 5, LastReason: "nak: busy"})
	})

	nak(2, "")
	nak(2, "")
	want = append(want, step{From: event.StatusDelivered, To: event.StatusDelivered, Group: "g", Deliveries: 2, Sequence: 5, Reason: "nak"})
	t.Run("NextDelivery", func(t *testing.T) {
		got := mustGet(t, s, e.ID, false)
		wantSteps(t, got, want...)
		if got.Status != event.StatusDelivered {
			t.Errorf("status = %s, want DELIVERED", got.Status)
		}
		wantGroups(t, got, event.GroupStatus{Group: "g", Status: event.StatusDelivered, Deliveries: 2, Sequence: 5, LastReason: "nak"})
	})

	deliver(3)
	nak(3, "again")
	want = append(want,
		step{From: event.StatusDelivered, To: event.StatusDelivered, Group: "g", Deliveries: 3, Sequence: 5},
		step{From: event.StatusDelivered, To: event.StatusDelivered, Group: "g", Deliveries: 3, Sequence: 5, Reason: "nak: again"})
	t.Run("AfterRedelivery", func(t *testing.T) {
		wantSteps(t, mustGet(t, s, e.ID, false), want...)
	})
}

func TestRecordGroupRedrive(t *testing.T) {
	t.Run("AfterFailed", func(t *testing.T) {
		s := openStore(t)
		saveGroup(t, s, "g", 0)
		saveGroup(t, s, "users", 0, "user.>") // known, not interested
		e := published(t, s, "order.created", 5)
		record(t, s, event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeDelivered, Deliveries: 1, Sequence: 5})
		record(t, s, event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeTerminated, Deliveries: 1, Sequence: 5, Reason: "bad"})
		if got := mustGet(t, s, e.ID, false); got.Status != event.StatusFailed {
			t.Fatalf("status = %s, want FAILED", got.Status)
		}

		const reason = "redrive attempt 1 as stream sequence 12"
		record(t, s, event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeRedriven, Sequence: 12, Reason: reason})
		want := append(publishedSteps(5),
			step{From: event.StatusPublished, To: event.StatusDelivered, Group: "g", Deliveries: 1, Sequence: 5},
			step{From: event.StatusPublished, To: event.StatusDelivered},
			step{From: event.StatusDelivered, To: event.StatusFailed, Group: "g", Deliveries: 1, Sequence: 5, Reason: "bad"},
			step{From: event.StatusDelivered, To: event.StatusFailed, Reason: "failed in group g"},
			step{From: event.StatusFailed, To: event.StatusPublished, Group: "g", Sequence: 12, Reason: reason},
			step{From: event.StatusFailed, To: event.StatusPublished})
		t.Run("Reopened", func(t *testing.T) {
			got := mustGet(t, s, e.ID, false)
			if got.Status != event.StatusPublished || got.Sequence != 5 {
				t.Errorf("after redrive: %s seq %d, want PUBLISHED with the event's own seq 5", got.Status, got.Sequence)
			}
			wantGroups(t, got, event.GroupStatus{Group: "g", Status: event.StatusPublished, Sequence: 12, LastReason: reason})
			wantSteps(t, got, want...)
		})

		t.Run("StaleIgnored", func(t *testing.T) {
			record(t, s, event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeAcked, Deliveries: 2, Sequence: 5})
			record(t, s, event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeDelivered, Deliveries: 3, Sequence: 5})
			s.RecordBySequence(event.SeqUpdate{Sequence: 5, Group: "g", Outcome: event.OutcomeAcked, Deliveries: 2})
			// The redrive message is g's alone: another group's report about it is not about this event.
			s.RecordBySequence(event.SeqUpdate{Sequence: 12, Group: "users", Outcome: event.OutcomeAcked, Deliveries: 1})
			flush(t, s)
			got := mustGet(t, s, e.ID, false)
			wantGroups(t, got, event.GroupStatus{Group: "g", Status: event.StatusPublished, Sequence: 12, LastReason: reason})
			wantSteps(t, got, want...)
		})

		t.Run("NewSequence", func(t *testing.T) {
			s.RecordBySequence(event.SeqUpdate{Sequence: 12, Group: "g", Outcome: event.OutcomeDelivered, Deliveries: 1})
			record(t, s, event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeAcked, Deliveries: 1, Sequence: 12})
			got := mustGet(t, s, e.ID, false)
			if got.Status != event.StatusProcessed {
				t.Errorf("status = %s, want PROCESSED", got.Status)
			}
			wantGroups(t, got, event.GroupStatus{Group: "g", Status: event.StatusProcessed, Deliveries: 1, Sequence: 12})
			wantSteps(t, got, append(want,
				step{From: event.StatusPublished, To: event.StatusDelivered, Group: "g", Deliveries: 1, Sequence: 12},
				step{From: event.StatusPublished, To: event.StatusDelivered},
				step{From: event.StatusDelivered, To: event.StatusProcessed, Group: "g", Deliveries: 1, Sequence: 12},
				step{From: event.StatusDelivered, To: event.StatusProcessed, Reason: "processed by every interested group"})...)
		})

		t.Run("RedriveNotInPublishedAfter", func(t *testing.T) {
			after, err := s.PublishedAfter(0)
			if err != nil {
				t.Fatal(err)
			}
			if want := []event.Pending{{ID: e.ID, Sequence: 5}}; !slices.Equal(after, want) {
				t.Errorf("PublishedAfter(0) = %+v, want only the event's own message %+v", after, want)
			}
		})
	})

	t.Run("NotFailed", func(t *testing.T) {
		s := openStore(t)
		saveGroup(t, s, "g", 0)
		saveGroup(t, s, "h", 0)
		e := published(t, s, "a", 5)
		record(t, s, event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeDelivered, Deliveries: 1, Sequence: 5})
		before := mustGet(t, s, e.ID, false)

		record(t, s, event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeRedriven, Sequence: 20, Reason: "redrive"})
		record(t, s, event.GroupUpdate{ID: e.ID, Group: "h", Outcome: event.OutcomeRedriven, Sequence: 21, Reason: "redrive"})
		// Sequences 20 and 21 must not name the event.
		s.RecordBySequence(event.SeqUpdate{Sequence: 20, Group: "g", Outcome: event.OutcomeAcked, Deliveries: 1})
		s.RecordBySequence(event.SeqUpdate{Sequence: 21, Group: "h", Outcome: event.OutcomeAcked, Deliveries: 1})
		flush(t, s)

		got := mustGet(t, s, e.ID, false)
		if got.Status != event.StatusDelivered {
			t.Errorf("status = %s, want DELIVERED", got.Status)
		}
		wantGroups(t, got,
			event.GroupStatus{Group: "g", Status: event.StatusDelivered, Deliveries: 1, Sequence: 5},
			event.GroupStatus{Group: "h", Status: event.StatusPublished})
		wantSteps(t, got, steps(before)...)
	})
}

func TestRecordBySequence(t *testing.T) {
	s := openStore(t)
	saveGroup(t, s, "g", 0)
	e := published(t, s, "a", 7)

	t.Run("OK", func(t *testing.T) {
		s.RecordBySequence(event.SeqUpdate{Sequence: 7, Group: "g", Outcome: event.OutcomeAcked, Deliveries: 1, Reason: "advisory"})
		flush(t, s)
		got := mustGet(t, s, e.ID, false)
		if got.Status != event.StatusProcessed {
			t.Errorf("status = %s, want PROCESSED", got.Status)
		}
		wantGroups(t, got, event.GroupStatus{Group: "g", Status: event.StatusProcessed, Deliveries: 1, Sequence: 7, LastReason: "advisory"})
	})

	t.Run("Ignored", func(t *testing.T) {
		other := published(t, s, "a", 8)
		s.RecordBySequence(event.SeqUpdate{Sequence: 99, Group: "g", Outcome: event.OutcomeAcked, Deliveries: 1})
		s.RecordBySequence(event.SeqUpdate{Sequence: 8, Group: "unknown", Outcome: event.OutcomeAcked, Deliveries: 1})
		s.RecordBySequence(event.SeqUpdate{Sequence: 0, Group: "g", Outcome: event.OutcomeAcked, Deliveries: 1})
		flush(t, s)
		got := mustGet(t, s, other.ID, false)
		if got.Status != event.StatusPublished {
			t.Errorf("status = %s, want PUBLISHED", got.Status)
		}
		wantGroups(t, got, event.GroupStatus{Group: "g", Status: event.StatusPublished})
		wantSteps(t, got, publishedSteps(8)...)
	})
}

func TestRecordGroupSeenDelivered(t *testing.T) {
	s := openStore(t)
	saveGroup(t, s, "g", 0)
	e := newEvent(t, "a", "p", "")
	mustAppend(t, s, e, 8)
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)

	// The delivery is recorded before the PUBLISHED mark is made.
	record(t, s, event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeDelivered, Deliveries: 1, Sequence: 9, Time: at})
	want := []step{
		{To: event.StatusAccepted},
		{From: event.StatusAccepted, To: event.StatusPublished, Sequence: 9, Reason: "seen delivered"},
		{From: event.StatusPublished, To: event.StatusDelivered, Group: "g", Deliveries: 1, Sequence: 9},
		{From: event.StatusPublished, To: event.StatusDelivered},
	}
	check := func(t *testing.T, s *boltstore.Store) {
		t.Helper()
		got := mustGet(t, s, e.ID, false)
		if got.Status != event.StatusDelivered || got.Sequence != 9 {
			t.Errorf("Get = %s seq %d, want DELIVERED seq 9", got.Status, got.Sequence)
		}
		wantGroups(t, got, event.GroupStatus{Group: "g", Status: event.StatusDelivered, Deliveries: 1, Sequence: 9})
		wantSteps(t, got, want...)
		if !got.History[1].Time.Equal(at) {
			t.Errorf("PUBLISHED at %v, want the delivery's time %v", got.History[1].Time, at)
		}

		after, err := s.PublishedAfter(8)
		if err != nil {
			t.Fatal(err)
		}
		if want := []event.Pending{{ID: e.ID, Sequence: 9}}; !slices.Equal(after, want) {
			t.Errorf("PublishedAfter(8) = %+v, want %+v", after, want)
		}
		pending, err := s.Unpublished()
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) != 0 {
			t.Errorf("Unpublished = %+v, want none", pending)
		}
	}
	t.Run("OK", func(t *testing.T) { check(t, s) })

	t.Run("LateMark", func(t *testing.T) {
		s.MarkPublished(e.ID, 9, "")
		flush(t, s)
		check(t, s)
	})

	t.Run("Reopen", func(t *testing.T) { check(t, reopen(t, s)) })
}

// waitSignal fails the test unless ch receives a signal within a few seconds.
func waitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	select {
	case <-ch:
	case <-timer.C:
		t.Fatalf("no signal after %s", what)
	}
}

// noSignal fails the test if ch holds a signal.
func noSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Errorf("unexpected signal %s", what)
	default:
	}
}

func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

// settle returns once every commit started so far has also sent its
// signals: a synchronous update returns before its commit signals, but the
// committer signals before it starts the next commit.
func settle(t *testing.T, s *boltstore.Store) {
	t.Helper()
	flush(t, s)
	flush(t, s)
}

func TestWatch(t *testing.T) {
	s := openStore(t)
	saveGroup(t, s, "g", 0)
	e := newEvent(t, "a", "p", "")
	mustAppend(t, s, e, 0)
	other := newEvent(t, "a", "q", "")
	mustAppend(t, s, other, 0)

	ch, stop := s.Watch(e.ID)
	otherCh, stopOther := s.Watch(other.ID)
	defer stopOther()
	second, stopSecond := s.Watch(e.ID)

	t.Run("MarkPublished", func(t *testing.T) {
		s.MarkPublished(e.ID, 5, "")
		waitSignal(t, ch, "MarkPublished")
		waitSignal(t, second, "MarkPublished (second watcher)")
	})

	settle(t, s)
	drain(ch)
	drain(second)
	drain(otherCh)

	t.Run("RecordGroupSync", func(t *testing.T) {
		record(t, s, event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeDelivered, Deliveries: 1, Sequence: 5})
		waitSignal(t, ch, "RecordGroupSync")
		waitSignal(t, second, "RecordGroupSync (second watcher)")
		settle(t, s)
		noSignal(t, otherCh, "for another event")
	})

	t.Run("Stop", func(t *testing.T) {
		stop()
		stop() // twice is harmless
		settle(t, s)
		drain(ch)
		drain(second)
		record(t, s, event.GroupUpdate{ID: e.ID, Group: "g", Outcome: event.OutcomeAcked, Deliveries: 1, Sequence: 5})
		waitSignal(t, second, "Acked (watcher still watching)")
		settle(t, s)
		noSignal(t, ch, "after stop")

		stopSecond()
		s.MarkPublished(e.ID, 6, "republished")
		settle(t, s)
		noSignal(t, second, "after stop")
	})
}
