package boltstore

import (
	"fmt"
	"os"
)

// Pre-zeroing the file's tail.
//
// bbolt grows its file with ftruncate, which leaves a hole: the first write to
// each new page allocates a block, and the fdatasync of that commit must then
// commit the file system's journal as well as the data (on ext4 here: ~0.7 ms
// instead of ~0.4 ms). Every commit of a growing ledger writes new pages, so
// every commit paid it. The committer therefore keeps zeroed, allocated space
// ahead of bbolt's high-water mark: when less than preallocLow is left, it
// writes preallocStep of zeros past the end of the file and syncs once. bbolt
// sees a file already large enough and never truncates it (grow only extends
// to sizes beyond the current file), and its page writes land on allocated
// blocks, so its fdatasyncs flush data only.
const (
	preallocLow  = 8 << 20
	preallocStep = 16 << 20
	zeroChunk    = 1 << 20
)

var zeros = make([]byte, zeroChunk)

// preallocate extends the file with zeros when bbolt's high-water mark is
// within preallocLow of its end. It runs on the committer between
// transactions and holds bbolt's writer lock, so no transaction writes pages
// while the tail is being zeroed. A failure (a full disk, say) is logged and
// changes nothing bbolt relies on: bbolt grows the file itself as before.
func (s *Store) preallocate() {
	if s.UnsafeNoSync || s.zeroTo-s.highWater >= preallocLow {
		return
	}
	tx, err := s.db.Begin(true)
	if err != nil {
		return
	}
	defer tx.Rollback()
	if err := s.extend(tx.Size()); err != nil {
		s.Logger.Warn("ledger: pre-zeroing the file tail failed; bbolt grows the file itself", "err", err)
		s.zeroTo = 1 << 62 // do not try again in this process
	}
}

// extend zeroes the file from bbolt's high-water mark (or the end of what
// is already zeroed) to preallocStep past the mark or the end of the file,
// whichever is further (bbolt may have grown it with a hole), capped by
// MaxSize. No page beyond the mark is in use: bbolt allocates new pages only
// at the mark, in a write transaction, and the caller holds the writer lock.
func (s *Store) extend(highWater int64) error {
	f, err := os.OpenFile(s.Path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	from := max(highWater, s.zeroTo)
	to := max(highWater+preallocStep, fi.Size())
	if s.MaxSize > 0 {
		to = min(to, int64(s.MaxSize))
	}
	s.highWater = highWater
	if from >= to {
		s.zeroTo = max(s.zeroTo, to)
		return nil
	}
	for off := from; off < to; off += zeroChunk {
		if _, err := f.WriteAt(zeros[:min(zeroChunk, to-off)], off); err != nil {
			return fmt.Errorf("zero ledger tail: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync ledger tail: %w", err)
	}
	s.zeroTo = to
	return nil
}
