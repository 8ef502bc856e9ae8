package boltstore_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jsctl/jsctl/boltstore"
	"github.com/jsctl/jsctl/event"
)

// idAt returns a new ID whose time is at's millisecond: List orders and
// bounds events by the time in their IDs.
var idAt = boltstore.IDAt

// listFixture is ten events, one a second from listBase, in the ledger:
// types cycle order.created, order.paid, user.created; statuses are
// ACCEPTED (0, 1), PUBLISHED (2, 3, 4), DELIVERED (5, 6), PROCESSED (7, 8)
// and FAILED (9).
type listFixture struct {
	s      *boltstore.Store
	events []*event.Event
}

var listBase = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func newListFixture(t *testing.T) *listFixture {
	t.Helper()
	s := openStore(t)
	saveGroup(t, s, "g", 0)
	types := []string{"order.created", "order.paid", "user.created"}
	f := &listFixture{s: s, events: make([]*event.Event, 10)}
	for i := range f.events {
		at := listBase.Add(time.Duration(i) * time.Second)
		e := newEvent(t, types[i%3], fmt.Sprint(i), "")
		e.ID, e.CreatedAt = idAt(t, at), at
		f.events[i] = e
	}
	// Append newest first: the order of the listing must come from the IDs.
	for i := len(f.events) - 1; i >= 0; i-- {
		mustAppend(t, s, f.events[i], 0)
	}
	for i, e := range f.events[2:] {
		s.MarkPublished(e.ID, uint64(100+i), "")
	}
	outcome := func(i int, o event.Outcome) {
		record(t, s, event.GroupUpdate{ID: f.events[i].ID, Group: "g", Outcome: o, Deliveries: 1, Sequence: uint64(100 + i - 2)})
	}
	outcome(5, event.OutcomeDelivered)
	outcome(6, event.OutcomeNaked)
	outcome(7, event.OutcomeAcked)
	outcome(8, event.OutcomeAcked)
	outcome(9, event.OutcomeTerminated)
	flush(t, s) // List reads the status index, written with the marks
	for i, want := range []event.Status{
		event.StatusAccepted, event.StatusAccepted,
		event.StatusPublished, event.StatusPublished, event.StatusPublished,
		event.StatusDelivered, event.StatusDelivered,
		event.StatusProcessed, event.StatusProcessed,
		event.StatusFailed,
	} {
		if got := mustGet(t, s, f.events[i].ID, false).Status; got != want {
			t.Fatalf("fixture event %d is %s, want %s", i, got, want)
		}
	}
	return f
}

// indexes returns the fixture positions of list, or fails the test.
func (f *listFixture) indexes(t *testing.T, list []*event.Event) []int {
	t.Helper()
	out := make([]int, len(list))
	for i, e := range list {
		out[i] = slices.IndexFunc(f.events, func(x *event.Event) bool { return x.ID == e.ID })
		if out[i] < 0 {
			t.Fatalf("List returned unknown event %s", e.ID)
		}
	}
	return out
}

func TestList(t *testing.T) {
	f := newListFixture(t)
	at := func(sec float64) time.Time { return listBase.Add(time.Duration(sec * float64(time.Second))) }
	tests := []struct {
		name string
		q    event.ListQuery
		want []int
	}{
		{"All", event.ListQuery{}, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"StatusAccepted", event.ListQuery{Status: event.StatusAccepted}, []int{0, 1}},
		{"StatusPublished", event.ListQuery{Status: event.StatusPublished}, []int{2, 3, 4}},
		{"StatusDelivered", event.ListQuery{Status: event.StatusDelivered}, []int{5, 6}},
		{"StatusProcessed", event.ListQuery{Status: event.StatusProcessed}, []int{7, 8}},
		{"StatusFailed", event.ListQuery{Status: event.StatusFailed}, []int{9}},
		{"TypePrefixToken", event.ListQuery{TypePrefix: "order."}, []int{0, 1, 3, 4, 6, 7, 9}},
		{"TypePrefixWhole", event.ListQuery{TypePrefix: "order.paid"}, []int{1, 4, 7}},
		{"TypePrefixUser", event.ListQuery{TypePrefix: "user"}, []int{2, 5, 8}},
		{"TypePrefixNone", event.ListQuery{TypePrefix: "nope"}, nil},
		{"StatusAndTypePrefix", event.ListQuery{Status: event.StatusPublished, TypePrefix: "order."}, []int{3, 4}},
		{"Since", event.ListQuery{Since: at(3)}, []int{3, 4, 5, 6, 7, 8, 9}},
		{"SinceBetween", event.ListQuery{Since: at(3.5)}, []int{4, 5, 6, 7, 8, 9}},
		{"SinceSameMillisecond", event.ListQuery{Since: at(3.0009)}, []int{3, 4, 5, 6, 7, 8, 9}},
		{"SinceAfterAll", event.ListQuery{Since: at(10)}, nil},
		{"Until", event.ListQuery{Until: at(5)}, []int{0, 1, 2, 3, 4, 5}},
		{"UntilSameMillisecond", event.ListQuery{Until: at(5.0009)}, []int{0, 1, 2, 3, 4, 5}},
		{"UntilBetween", event.ListQuery{Until: at(2.5)}, []int{0, 1, 2}},
		{"UntilBeforeAll", event.ListQuery{Until: at(-1)}, nil},
		{"SinceUntil", event.ListQuery{Since: at(3), Until: at(5)}, []int{3, 4, 5}},
		{"SinceIsUntil", event.ListQuery{Since: at(4), Until: at(4)}, []int{4}},
		{"SinceAfterUntil", event.ListQuery{Since: at(5), Until: at(3)}, nil},
		{"SinceUntilStatus", event.ListQuery{Status: event.StatusPublished, Since: at(3), Until: at(9)}, []int{3, 4}},
		{"SinceUntilTypePrefix", event.ListQuery{TypePrefix: "user.", Since: at(1), Until: at(7)}, []int{2, 5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, next, err := f.s.List(tc.q)
			if err != nil {
				t.Fatalf("List(%+v): %v", tc.q, err)
			}
			if idx := f.indexes(t, got); !slices.Equal(idx, tc.want) {
				t.Errorf("List(%+v) = events %v, want %v", tc.q, idx, tc.want)
			}
			if next != "" {
				t.Errorf("next page token = %q, want none without a limit", next)
			}
			for _, e := range got {
				if tc.q.Status != event.StatusUnspecified && e.Status != tc.q.Status {
					t.Errorf("event %s is %s, want %s", e.ID, e.Status, tc.q.Status)
				}
				if e.Payload != nil {
					t.Errorf("event %s has a payload; List returns none", e.ID)
				}
			}
		})
	}

	t.Run("Fields", func(t *testing.T) {
		got, _, err := f.s.List(event.ListQuery{Status: event.StatusFailed})
		if err != nil || len(got) != 1 {
			t.Fatalf("List(FAILED) = %d events, %v; want 1", len(got), err)
		}
		e := got[0]
		if e.Type != "order.created" || e.Sequence != 107 || !e.CreatedAt.Equal(listBase.Add(9*time.Second)) {
			t.Errorf("listed event = %+v, want type order.created, sequence 107, created at %v", e, listBase.Add(9*time.Second))
		}
		if len(e.Groups) != 1 || e.Groups[0].Group != "g" || e.Groups[0].Status != event.StatusFailed {
			t.Errorf("Groups = %+v, want g FAILED", e.Groups)
		}
	})
}

func TestListPages(t *testing.T) {
	f := newListFixture(t)
	queries := []struct {
		name string
		q    event.ListQuery
	}{
		{"All", event.ListQuery{}},
		{"Status", event.ListQuery{Status: event.StatusPublished}},
		{"TypePrefix", event.ListQuery{TypePrefix: "order."}},
		{"SinceUntil", event.ListQuery{Since: listBase.Add(2 * time.Second), Until: listBase.Add(8 * time.Second)}},
	}
	for _, qc := range queries {
		all, _, err := f.s.List(qc.q)
		if err != nil {
			t.Fatalf("List(%+v): %v", qc.q, err)
		}
		want := f.indexes(t, all)
		for _, limit := range []int{1, 2, 3, 4, 10, 11} {
			t.Run(fmt.Sprintf("%s/Limit%d", qc.name, limit), func(t *testing.T) {
				q := qc.q
				q.Limit = limit
				var got []int
				for pages := 0; ; pages++ {
					if pages > len(f.events)+1 {
						t.Fatalf("more than %d pages: token %q", pages, q.PageToken)
					}
					page, next, err := f.s.List(q)
					if err != nil {
						t.Fatalf("List(%+v): %v", q, err)
					}
					if len(page) > limit {
						t.Fatalf("page of %d events, over the limit %d", len(page), limit)
					}
					if next != "" && len(page) == 0 {
						t.Fatalf("empty page with next token %q", next)
					}
					got = append(got, f.indexes(t, page)...)
					if next == "" {
						break
					}
					q.PageToken = next
				}
				if !slices.Equal(got, want) {
					t.Errorf("pages gave events %v, want each of %v once, in order", got, want)
				}
			})
		}
	}

	t.Run("TokenBeforeSince", func(t *testing.T) {
		// A token from before the window does not widen it.
		_, next, err := f.s.List(event.ListQuery{Limit: 1})
		if err != nil || next == "" {
			t.Fatalf("List(Limit 1) = token %q, %v", next, err)
		}
		got, _, err := f.s.List(event.ListQuery{Since: listBase.Add(7 * time.Second), PageToken: next})
		if err != nil {
			t.Fatal(err)
		}
		if idx := f.indexes(t, got); !slices.Equal(idx, []int{7, 8, 9}) {
			t.Errorf("events %v, want [7 8 9]", idx)
		}
	})

	t.Run("TokenAfterUntil", func(t *testing.T) {
		_, next, err := f.s.List(event.ListQuery{Since: listBase.Add(8 * time.Second), Limit: 1})
		if err != nil || next == "" {
			t.Fatalf("List = token %q, %v", next, err)
		}
		got, next, err := f.s.List(event.ListQuery{Until: listBase.Add(5 * time.Second), PageToken: next})
		if err != nil || len(got) != 0 || next != "" {
			t.Errorf("List = %d events, token %q, %v; want none", len(got), next, err)
		}
	})
}

func TestListBadPageToken(t *testing.T) {
	s := openStore(t)
	id, err := event.NewID()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, token string }{
		{"NotHex", "zz"},
		{"TooShort", "abcd"},
		{"TooLong", strings.Repeat("ab", 17)},
		{"OddLength", strings.Repeat("a", 31)},
		{"UUIDWithDashes", id.String()},
	} {
		t.Run("ErrInvalid/"+tc.name, func(t *testing.T) {
			got, next, err := s.List(event.ListQuery{PageToken: tc.token})
			if !errors.Is(err, event.ErrInvalid) {
				t.Fatalf("List(PageToken %q) = %v, want an error wrapping ErrInvalid", tc.token, err)
			}
			if got != nil || next != "" {
				t.Errorf("List(PageToken %q) returned %d events and token %q with the error", tc.token, len(got), next)
			}
		})
	}
	t.Run("OK/EmptyLedger", func(t *testing.T) {
		got, next, err := s.List(event.ListQuery{PageToken: strings.Repeat("00", 16)})
		if err != nil || len(got) != 0 || next != "" {
			t.Errorf("List = %d events, token %q, %v; want none", len(got), next, err)
		}
	})
}
