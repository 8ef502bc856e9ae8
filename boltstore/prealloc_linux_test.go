package boltstore

import (
	"bytes"
	"os"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// Linux's lseek whences: the next data, or the next hole (the end of the
// file if there is none), at or after the offset.
const (
	seekData = 3
	seekHole = 4
)

// tailHole returns where the first hole after bbolt's high-water mark starts,
// the high-water mark and the file's size.
func tailHole(t *testing.T, s *Store) (hole, highWater, size int64) {
	t.Helper()
	if err := s.db.View(func(tx *bolt.Tx) error { highWater = tx.Size(); return nil }); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	hole, err = syscall.Seek(int(f.Fd()), highWater, seekHole)
	if err != nil {
		t.Fatalf("SEEK_HOLE: %v", err)
	}
	return hole, highWater, fi.Size()
}

func TestPreallocatedTail(t *testing.T) {
	s := openInternal(t)
	payload := bytes.Repeat([]byte("p"), 4096)
	for range 20 {
		appendConcurrently(t, s, 100) // ~8 MB of pages in all: bbolt grows its file several times
		hole, hw, size := tailHole(t, s)
		if size-hw < preallocLow/2 {
			t.Fatalf("only %d bytes of file past the high-water mark %d", size-hw, hw)
		}
		if hole < size {
			t.Fatalf("hole at %d in the tail [%d, %d): bbolt's next pages would be written into unallocated blocks", hole, hw, size)
		}
		if _, _, err := s.Append(internalEvent(t, payload, ""), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	// The zeroed tail is plain free space to bbolt after a restart.
	s2 := reopenInternal(t, s)
	appendConcurrently(t, s2, 10)
	if err := s2.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestPreallocateRespectsMaxSize(t *testing.T) {
	const maxSize = 4 << 20
	s := openInternal(t, func(s *Store) { s.MaxSize = maxSize })
	appendConcurrently(t, s, 50)
	hole, hw, size := tailHole(t, s)
	if hole < min(size, maxSize) {
		t.Fatalf("hole at %d in the tail [%d, %d)", hole, hw, min(size, maxSize))
	}
	// bbolt may extend the file past MaxSize with a hole; jsctl writes no
	// zeros there.
	f, err := os.Open(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if off, err := syscall.Seek(int(f.Fd()), maxSize, seekData); err != syscall.ENXIO {
		t.Fatalf("SEEK_DATA from MaxSize = %d, %v; want ENXIO (no blocks past MaxSize in a %d-byte file)", off, err, size)
	}
}
