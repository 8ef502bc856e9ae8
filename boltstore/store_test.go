package boltstore_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jsctl/jsctl/boltstore"
	"github.com/jsctl/jsctl/event"
)

// Compile-time check that Store is a ledger.
var _ event.Ledger = (*boltstore.Store)(nil)

// openStore opens a Store on a new file in t.TempDir().
func openStore(t *testing.T, opts ...func(*boltstore.Store)) *boltstore.Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "ledger.db"), opts...)
}

// openAt opens a Store on path. On cleanup it closes the store and runs bbolt's
// consistency check on the file.
func openAt(t *testing.T, path string, opts ...func(*boltstore.Store)) *boltstore.Store {
	t.Helper()
	s := boltstore.New(path)
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
		checkFile(t, s.Path)
	})
	return s
}

// checkFile runs bbolt's consistency check on a closed ledger file.
var checkFile = boltstore.CheckFile

// reopen closes s and opens a new Store on the same file.
func reopen(t *testing.T, s *boltstore.Store, opts ...func(*boltstore.Store)) *boltstore.Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return openAt(t, s.Path, opts...)
}

// newEvent returns an event as the Pipeline hands it to the ledger.
func newEvent(t *testing.T, typ, payload, key string) *event.Event {
	t.Helper()
	id, err := event.NewID()
	if err != nil {
		t.Fatal(err)
	}
	return &event.Event{
		ID:             id,
		Type:           typ,
		Payload:        []byte(payload),
		IdempotencyKey: key,
		CreatedAt:      time.Now(),
		Status:         event.StatusAccepted,
	}
}

func mustAppend(t *testing.T, s *boltstore.Store, e *event.Event, floor uint64) *event.Event {
	t.Helper()
	stored, created, err := s.Append(e, floor)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if !created {
		t.Fatalf("Append: created=false for a new event")
	}
	return stored
}

func mustGet(t *testing.T, s *boltstore.Store, id event.ID, withPayload bool) *event.Event {
	t.Helper()
	e, err := s.Get(id, withPayload)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return e
}

// fakeClock is real time moved by an offset (defined in export_test.go,
// for the internal tests too).
type fakeClock = boltstore.FakeClock

// wantHistory checks the (From, To, Sequence) of each transition.
func wantHistory(t *testing.T, e *event.Event, want ...event.Transition) {
	t.Helper()
	if len(e.History) != len(want) {
		t.Fatalf("history has %d entries, want %d: %+v", len(e.History), len(want), e.History)
	}
	for i, w := range want {
		g := e.History[i]
		if g.From != w.From || g.To != w.To || g.Sequence != w.Sequence || g.Reason != w.Reason {
			t.Errorf("history[%d] = %s->%s seq %d reason %q, want %s->%s seq %d reason %q",
				i, g.From, g.To, g.Sequence, g.Reason, w.From, w.To, w.Sequence, w.Reason)
		}
	}
}

func TestOpenLocked(t *testing.T) {
	first := openStore(t)

	second := boltstore.New(first.Path)
	second.LockTimeout = 100 * time.Millisecond
	begin := time.Now()
	err := second.Open()
	elapsed := time.Since(begin)
	if err == nil {
		second.Close()
		t.Fatal("second Open on a held file succeeded")
	}
	if !errors.Is(err, event.ErrLocked) {
		t.Fatalf("second Open = %v, want an error wrapping ErrLocked", err)
	}
	if dir := filepath.Dir(first.Path); !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q does not name the data dir %s", err, dir)
	}
	// bbolt polls the lock every 50ms and gives up up to 50ms before the timeout.
	if elapsed > time.Second {
		t.Errorf("second Open failed after %v, want within 1s of its 100ms LockTimeout", elapsed)
	}

	// The first store is unharmed and the lock is released by Close.
	e := newEvent(t, "a", "p", "")
	mustAppend(t, first, e, 0)
	third := reopen(t, first)
	mustGet(t, third, e.ID, true)
}

func TestOpenCorrupt(t *testing.T) {
	garbage := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + i/13) // not random: reproducible
		}
		return b
	}
	tests := []struct {
		name string
		data []byte
	}{
		{name: "Text", data: []byte("this is not a bbolt file\n")},
		{name: "Garbage2KiB", data: garbage(2048)},
		{name: "GarbagePage", data: garbage(4096)},
		{name: "Garbage64KiB", data: garbage(64 << 10)},
		{name: "Garbage1MiB", data: garbage(1 << 20)},
		{name: "Zeros64KiB", data: make([]byte, 64<<10)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ledger.db")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			s := boltstore.New(path)
			err := s.Open()
			if err == nil {
				s.Close()
				t.Fatal("Open of a corrupt file succeeded")
			}
			if !errors.Is(err, event.ErrCorrupt) {
				t.Fatalf("Open = %v, want an error wrapping ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			// The file is not locked after the failed Open.
			s2 := boltstore.New(path)
			s2.LockTimeout = 100 * time.Millisecond
			switch err := s2.Open(); {
			case err == nil:
				s2.Close()
				t.Error("second Open of the corrupt file succeeded")
			case errors.Is(err, event.ErrLocked):
				t.Errorf("file still locked after failed Open: %v", err)
			}
		})
	}
}

func TestOpenTruncated(t *testing.T) {
	// A real ledger with some published events.
	src := openStore(t)
	for i := range 300 {
		e := newEvent(t, "a", strings.Repeat("x", 1000), fmt.Sprint(i))
		mustAppend(t, src, e, 0)
		src.MarkPublished(e.ID, uint64(i+1), "")
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(src.Path)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		size int
	}{
		{name: "1", size: 1},
		{name: "100", size: 100},
		{name: "HalfMetaPage", size: 2048},
		{name: "JustOverHalfPage", size: 2049},
		{name: "OnePageMinusOne", size: 4095},
		{name: "OneMetaPage", size: 4096},
		{name: "HalfSecondMetaPage", size: 6000},
		{name: "TwoMetaPages", size: 8192},
		{name: "Half", size: 200 << 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ledger.db")
			if err := os.WriteFile(path, data[:tc.size], 0o600); err != nil {
				t.Fatal(err)
			}
			s := boltstore.New(path)
			err := s.Open()
			if err == nil {
				s.Close()
				t.Fatalf("Open of a ledger truncated to %d bytes succeeded", tc.size)
			}
			if !errors.Is(err, event.ErrCorrupt) {
				t.Fatalf("Open = %v, want an error wrapping ErrCorrupt", err)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	s := openStore(t)
	if err := s.Check(); err != nil {
		t.Fatalf("Check on a new store: %v", err)
	}
	for i := range 50 {
		e := newEvent(t, "a", strings.Repeat("p", 100*i), fmt.Sprint(i))
		e.Headers = map[string]string{"X-I": fmt.Sprint(i)}
		mustAppend(t, s, e, uint64(i))
		if i%2 == 0 {
			s.MarkPublished(e.ID, uint64(i+1), "")
		}
	}
	if err := s.Check(); err != nil {
		t.Fatalf("Check after appends: %v", err)
	}
	s = reopen(t, s)
	if err := s.Check(); err != nil {
		t.Fatalf("Check after reopen: %v", err)
	}
}

func TestClose(t *testing.T) {
	t.Run("ErrUnavailable", func(t *testing.T) {
		s := openStore(t)
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		_, _, err := s.Append(newEvent(t, "a", "p", ""), 0)
		if !errors.Is(err, event.ErrUnavailable) {
			t.Fatalf("Append after Close = %v, want an error wrapping ErrUnavailable", err)
		}
	})
	t.Run("Twice", func(t *testing.T) {
		s := openStore(t)
		if err := s.Close(); err != nil {
			t.Fatalf("first Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
	t.Run("NeverOpened", func(t *testing.T) {
		s := boltstore.New(filepath.Join(t.TempDir(), "ledger.db"))
		if err := s.Close(); err != nil {
			t.Fatalf("Close of a Store never opened: %v", err)
		}
	})
	t.Run("CommitsInFlightAppends", func(t *testing.T) {
		// Appends racing with Close either succeed (and are stored) or fail
		// with ErrUnavailable (and are not).
		s := openStore(t)
		const n = 100
		var wg sync.WaitGroup
		var errs [n]error
		evs := make([]*event.Event, n)
		for i := range n {
			evs[i] = newEvent(t, "a", fmt.Sprint(i), "")
		}
		for i := range n {
			wg.Go(func() { _, _, errs[i] = s.Append(evs[i], 0) })
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		wg.Wait()
		s2 := openAt(t, s.Path)
		for i, err := range errs {
			_, getErr := s2.Get(evs[i].ID, false)
			switch {
			case err == nil && getErr != nil:
				t.Errorf("Append %d succeeded but Get after reopen = %v", i, getErr)
			case errors.Is(err, event.ErrUnavailable) && !errors.Is(getErr, event.ErrNotFound):
				t.Errorf("Append %d failed with %v but Get after reopen = %v", i, err, getErr)
			case err != nil && !errors.Is(err, event.ErrUnavailable):
				t.Errorf("Append %d = %v, want nil or ErrUnavailable", i, err)
			}
		}
	})
}

func TestOpenCreatesDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "ledger.db")
	s := openAt(t, path)
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("data dir mode = %o, want 700", perm)
	}
	fi, err = os.Stat(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("ledger file mode = %o, want no group or other access", perm)
	}
	if !filepath.IsAbs(s.Path) {
		t.Errorf("Path = %q after Open, want absolute", s.Path)
	}
}
