package event_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jsctl/jsctl/event"
)

func TestParseID(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		id, err := event.NewID()
		if err != nil {
			t.Fatal(err)
		}
		s := id.String()
		if len(s) != 36 {
			t.Fatalf("String() = %q, want 36 characters", s)
		}
		got, err := event.ParseID(s)
		if err != nil {
			t.Fatalf("ParseID(%q) = %v", s, err)
		}
		if got != id {
			t.Fatalf("ParseID(%q) = %s, want %s", s, got, id)
		}
	})
	t.Run("OKUpperCase", func(t *testing.T) {
		id, err := event.NewID()
		if err != nil {
			t.Fatal(err)
		}
		got, err := event.ParseID(strings.ToUpper(id.String()))
		if err != nil || got != id {
			t.Fatalf("ParseID(upper) = %s, %v; want %s", got, err, id)
		}
	})

	id, err := event.NewID()
	if err != nil {
		t.Fatal(err)
	}
	invalid := []struct {
		name, s string
	}{
		{"Empty", ""},
		{"Word", "nope"},
		{"NonHex36", strings.Repeat("z", 8) + "-" + strings.Repeat("z", 4) + "-" + strings.Repeat("z", 4) + "-" + strings.Repeat("z", 4) + "-" + strings.Repeat("z", 12)},
		{"Dashes36", strings.Repeat("-", 36)},
		{"UUIDv4", "6ba7b810-9dad-41d1-80b4-00c04fd430c8"},
		{"UUIDv1", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"},
		{"Nil", "00000000-0000-0000-0000-000000000000"},
		{"NoDashes", strings.ReplaceAll(id.String(), "-", "")},
		{"Braces", "{" + id.String() + "}"},
		{"URN", "urn:uuid:" + id.String()},
		{"TrailingSpace", id.String() + " "},
		{"TooShort", id.String()[:35]},
	}
	for _, tc := range invalid {
		t.Run("ErrInvalid/"+tc.name, func(t *testing.T) {
			got, err := event.ParseID(tc.s)
			if !errors.Is(err, event.ErrInvalid) {
				t.Fatalf("ParseID(%q) = %s, %v; want an error wrapping ErrInvalid", tc.s, got, err)
			}
			if got != (event.ID{}) {
				t.Fatalf("ParseID(%q) returned a non-zero ID %s with its error", tc.s, got)
			}
		})
	}
}

func TestIDTime(t *testing.T) {
	before := time.Now()
	id, err := event.NewID()
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	got := id.Time()
	// The ID has millisecond precision.
	if got.Before(before.Truncate(time.Millisecond)) || got.After(after) {
		t.Fatalf("Time() = %v, want between %v and %v", got, before, after)
	}
	if d := time.Since(got); d < 0 || d > time.Second {
		t.Fatalf("Time() is %v from now, want within a second", d)
	}
}

func TestNewIDOrdered(t *testing.T) {
	prev, err := event.NewID()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		id, err := event.NewID()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Compare(prev[:], id[:]) >= 0 {
			t.Fatalf("ID %d (%s) does not sort after the one before (%s)", i, id, prev)
		}
		if id.Time().Before(prev.Time()) {
			t.Fatalf("ID %d time %v is before the previous %v", i, id.Time(), prev.Time())
		}
		prev = id
	}
}

func TestBodyHash(t *testing.T) {
	t.Run("IndependentOfHeaderOrder", func(t *testing.T) {
		// Two maps with the same content built in opposite orders; Go also
		// randomises iteration, so repeated hashing exercises many orders.
		a, b := map[string]string{}, map[string]string{}
		const n = 30
		for i := range n {
			a[fmt.Sprintf("X-%02d", i)] = fmt.Sprint(i)
			b[fmt.Sprintf("X-%02d", n-1-i)] = fmt.Sprint(n - 1 - i)
		}
		ea := &event.Event{Type: "t", Payload: []byte("p"), Headers: a}
		eb := &event.Event{Type: "t", Payload: []byte("p"), Headers: b}
		want := ea.BodyHash()
		for range 50 {
			if ea.BodyHash() != want || eb.BodyHash() != want {
				t.Fatal("BodyHash differs for the same body")
			}
		}
	})

	t.Run("IgnoresNonBodyFields", func(t *testing.T) {
		id, err := event.NewID()
		if err != nil {
			t.Fatal(err)
		}
		a := &event.Event{Type: "t", Payload: []byte("p"), IdempotencyKey: "k1"}
		b := &event.Event{ID: id, Type: "t", Payload: []byte("p"), IdempotencyKey: "k2",
			CreatedAt: time.Now(), Status: event.StatusPublished, Sequence: 7}
		if a.BodyHash() != b.BodyHash() {
			t.Fatal("BodyHash depends on fields that are not the body")
		}
	})

	base := func() *event.Event {
		return &event.Event{Type: "order.created", Payload: []byte("payload"), Headers: map[string]string{"X-A": "1", "X-B": "2"}}
	}
	differ := []struct {
		name string
		a, b *event.Event
	}{
		{"Type", base(), func() *event.Event { e := base(); e.Type = "order.updated"; return e }()},
		{"Payload", base(), func() *event.Event { e := base(); e.Payload = []byte("payloaD"); return e }()},
		{"PayloadLonger", base(), func() *event.Event { e := base(); e.Payload = []byte("payload\x00"); return e }()},
		{"HeaderName", base(), func() *event.Event { e := base(); e.Headers = map[string]string{"X-A": "1", "X-C": "2"}; return e }()},
		{"HeaderValue", base(), func() *event.Event { e := base(); e.Headers["X-B"] = "3"; return e }()},
		{"HeaderAdded", base(), func() *event.Event { e := base(); e.Headers["X-C"] = ""; return e }()},
		{"HeaderRemoved", base(), func() *event.Event { e := base(); delete(e.Headers, "X-B"); return e }()},
		// Naive concatenation of the fields would make each pair collide.
		{"TypePayloadBoundary",
			&event.Event{Type: "ab", Payload: []byte("c")},
			&event.Event{Type: "a", Payload: []byte("bc")}},
		{"HeaderNameValueBoundary",
			&event.Event{Type: "t", Headers: map[string]string{"ab": "c"}},
			&event.Event{Type: "t", Headers: map[string]string{"a": "bc"}}},
		{"HeaderValuePayloadBoundary",
			&event.Event{Type: "t", Headers: map[string]string{"k": "vp"}, Payload: []byte("q")},
			&event.Event{Type: "t", Headers: map[string]string{"k": "v"}, Payload: []byte("pq")}},
		{"HeaderOrPayload",
			&event.Event{Type: "t", Headers: map[string]string{"k": "v"}},
			&event.Event{Type: "t", Payload: []byte("kv")}},
		{"TypeOrHeader",
			&event.Event{Type: "tk", Headers: map[string]string{"": "v"}},
			&event.Event{Type: "t", Headers: map[string]string{"k": "v"}}},
		// A payload that spells a length-prefixed header must not look like one.
		{"PayloadSpellsHeader",
			&event.Event{Type: "t", Headers: map[string]string{"k": "v"}, Payload: []byte("p")},
			&event.Event{Type: "t", Payload: []byte("\x01k\x01v\x01p")}},
		{"HeaderPairsSwapped",
			&event.Event{Type: "t", Headers: map[string]string{"a": "b", "c": "d"}},
			&event.Event{Type: "t", Headers: map[string]string{"a": "d", "c": "b"}}},
	}
	for _, tc := range differ {
		t.Run("Differs/"+tc.name, func(t *testing.T) {
			if tc.a.BodyHash() == tc.b.BodyHash() {
				t.Fatalf("BodyHash collides for %+v and %+v", tc.a, tc.b)
			}
		})
	}

	t.Run("NilAndEmptyAreTheSame", func(t *testing.T) {
		a := &event.Event{Type: "t"}
		b := &event.Event{Type: "t", Payload: []byte{}, Headers: map[string]string{}}
		if a.BodyHash() != b.BodyHash() {
			t.Fatal("nil and empty payload/headers hash differently")
		}
	})
}

func TestStatus(t *testing.T) {
	tests := []struct {
		s        event.Status
		name     string
		terminal bool
	}{
		{event.StatusUnspecified, "UNSPECIFIED", false},
		{event.StatusAccepted, "ACCEPTED", false},
		{event.StatusPublished, "PUBLISHED", false},
		{event.StatusDelivered, "DELIVERED", false},
		{event.StatusProcessed, "PROCESSED", true},
		{event.StatusFailed, "FAILED", true},
		{event.Status(6), "Status(6)", false},
		{event.Status(255), "Status(255)", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.String(); got != tc.name {
				t.Errorf("Status(%d).String() = %q, want %q", uint8(tc.s), got, tc.name)
			}
			if got := tc.s.Terminal(); got != tc.terminal {
				t.Errorf("Status(%d).Terminal() = %v, want %v", uint8(tc.s), got, tc.terminal)
			}
		})
	}
	t.Run("APIValues", func(t *testing.T) {
		// The numeric values match the API's enum and must never move.
		want := []event.Status{0, 1, 2, 3, 4, 5}
		got := []event.Status{event.StatusUnspecified, event.StatusAccepted, event.StatusPublished,
			event.StatusDelivered, event.StatusProcessed, event.StatusFailed}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("status %s = %d, want %d", got[i], got[i], want[i])
			}
		}
	})
}
