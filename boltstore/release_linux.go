package boltstore

import (
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// releaseMappedPages drops the ledger's pages from the process's memory map.
//
// bbolt reads the file through a read-only shared mapping and writes it with
// pwrite, so every mapped page is a clean page of the file cache. Each page
// written is read back through the mapping at least once (while it is the
// tail of its bucket), so without this the process's RSS grows with the
// ledger's size: 245 MB of a 1M-event ledger, though the kernel could take
// them back at any time. MADV_DONTNEED unmaps them; the next read faults a
// page back in from the page cache (or the disk). The pages in use (branch
// pages, the tails) come back within a commit or two.
func (s *Store) releaseMappedPages() {
	err := s.db.View(func(tx *bolt.Tx) error {
		// A read transaction holds bbolt's mmap lock: the mapping cannot
		// move or shrink while it is advised. It covers at least tx.Size().
		data := s.db.Info().Data
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, data, uintptr(tx.Size()), syscall.MADV_DONTNEED); errno != 0 {
			return errno
		}
		return nil
	})
	if err != nil {
		s.Logger.Warn("ledger: releasing mapped pages failed", "err", err)
	}
}
