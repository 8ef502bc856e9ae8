package boltstore

// Test helpers for the internal tests, exported to the external ones
// (boltstore_test) too: test files are not part of the package.

import (
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/jsctl/jsctl/event"
)

// FakeClock is real time moved by an offset; safe for concurrent use.
type FakeClock struct{ offset atomic.Int64 }

func (c *FakeClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *FakeClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }
func (c *FakeClock) Set(d time.Duration)     { c.offset.Store(int64(d)) }

// IDAt returns a new ID whose time is at's millisecond: IDs order events by
// the time in them.
func IDAt(t testing.TB, at time.Time) ID {
	t.Helper()
	id, err := event.NewID()
	if err != nil {
		t.Fatal(err)
	}
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(at.UnixMilli()))
	copy(id[:6], ms[2:])
	if !id.Time().Equal(at.Truncate(time.Millisecond)) {
		t.Fatalf("IDAt(%v) has time %v", at, id.Time())
	}
	return id
}

// CheckFile runs bbolt's consistency check on a closed ledger file.
func CheckFile(t testing.TB, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Errorf("open %s for check: %v", path, err)
		return
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil {
		t.Errorf("check %s: %v", path, err)
	}
}
