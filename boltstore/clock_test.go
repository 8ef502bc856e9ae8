package boltstore

import (
	"sync/atomic"
	"time"
)

// FakeClock is real time moved by an offset; safe for concurrent use. It
// is exported to the external tests (boltstore_test) only: test files are
// not part of the package.
type FakeClock struct{ offset atomic.Int64 }

func (c *FakeClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *FakeClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }
func (c *FakeClock) Set(d time.Duration)     { c.offset.Store(int64(d)) }
