package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/jsctl/jsctl/event"
)

// Bucket names; see the package doc for their layout.
var (
	bucketMeta       = []byte("meta")
	bucketEvents     = []byte("events")
	bucketState      = []byte("state")
	bucketByStatus   = []byte("by_status")
	bucketGroups     = []byte("groups")
	bucketSequences  = []byte("sequences")
	bucketIdem       = []byte("idem")
	bucketIdemExpiry = []byte("idem_expiry")

	// Added by schema 2, for retention.
	bucketFinished        = []byte("finished")
	bucketTombstones      = []byte("tombstones")
	bucketTombstoneExpiry = []byte("tombstone_expiry")

	schema1Buckets = [][]byte{bucketMeta, bucketEvents, bucketState, bucketByStatus, bucketSequences, bucketIdem, bucketIdemExpiry, bucketGroups}
	allBuckets     = slices.Concat(schema1Buckets, [][]byte{bucketFinished, bucketTombstones, bucketTombstoneExpiry})

	keySchema = []byte("schema")
)

// schemaVersion 2 added retention: the finished and tombstone buckets and
// state records with a finished time. Open upgrades a schema 1 file.
const schemaVersion = 2

// Store is the bbolt ledger. Create it with New, set fields, then Open.
type Store struct {
	// Path of the bbolt file. Its directory is created with mode 0700.
	Path string

	// LockTimeout is how long Open waits for another process to release the
	// file. Default 1s.
	LockTimeout time.Duration

	// IdempotencyTTL is how long an idempotency key is remembered. Default 24h.
	IdempotencyTTL time.Duration

	// MaxBatch caps how many appends share one transaction. Default 4096.
	MaxBatch int

	// MaxSize caps the space the ledger may use in its file, in bytes; 0 means
	// no limit. Writes beyond it fail with event.ErrFull. (bbolt grows the
	// file in steps of up to 16 MiB, and the committer zeroes space ahead of
	// it up to MaxSize, so the file can be larger than what is used.)
	MaxSize int

	// MarkDelay is how long a PUBLISHED mark may wait to be written, so that
	// many share the pages they touch; MarkBatch caps how many wait. Marks
	// need not be durable (see takeUpdates). Defaults 20ms and 2048.
	MarkDelay time.Duration
	MarkBatch int

	// CleanupInterval is how often expired idempotency keys and events past
	// their retention are removed. Default 1m.
	CleanupInterval time.Duration

	// Retention bounds how long finished events are kept; see Retention for
	// the defaults.
	Retention Retention

	// UnsafeNoSync skips the fsync of every commit. It exists only to show
	// that the power-loss test catches a ledger that does not fsync; never
	// set it otherwise. Default false.
	UnsafeNoSync bool

	// OnCommit, if set, is told of every group commit (for metrics). It
	// runs on the committer and must not block.
	OnCommit func(CommitStats)

	// OnStatus, if set, is told of every change of an event's overall
	// status made by a consumer outcome (DELIVERED, PROCESSED, FAILED, and
	// back after a redrive), after its commit (for metrics). It runs on the
	// committer and must not block.
	OnStatus func(eventType string, to event.Status)

	// OnExpire, if set, is told how many events of a status retention
	// removed, after the commit that removed them (for metrics). It runs on
	// the committer and must not block.
	OnExpire func(status event.Status, n int)

	// Now defaults to time.Now; tests replace it.
	Now func() time.Time

	Logger *slog.Logger

	db *bolt.DB

	appends chan *appendReq
	wake    chan struct{}
	closing chan struct{}
	done    chan struct{}

	closeMu sync.RWMutex // held for reading while an Append enqueues
	closed  bool

	markMu  sync.Mutex
	updates []update // made, not yet taken by the committer
	urgent  int      // how many of updates are not PUBLISHED marks
	// when updates last became non-empty; zero means due at once
	updatesSince time.Time
	marked       map[ID]mark // marks made, not yet committed: Get applies these

	groupMu sync.RWMutex
	groups  map[string]event.Group // every consumer group, by name

	watchMu  sync.Mutex
	watchers map[ID][]chan struct{}

	// Owned by the committer: bbolt's high-water mark as of the last
	// commit, and the end of the zeroed tail (prealloc.go).
	highWater, zeroTo int64
}

// ID is the ledger's key for an event.
type ID = event.ID

// New returns a Store for the file at path with defaults set.
func New(path string) *Store {
	return &Store{
		Path:            path,
		LockTimeout:     time.Second,
		IdempotencyTTL:  24 * time.Hour,
		MaxBatch:        4096,
		MarkDelay:       20 * time.Millisecond,
		MarkBatch:       2048,
		CleanupInterval: time.Minute,
		Retention:       DefaultRetention(),
		Now:             time.Now,
		Logger:          slog.Default(),
	}
}

// Open opens or creates the file, checks its schema and starts the committer.
// Errors wrap event.ErrLocked when another process holds the file and
// event.ErrCorrupt when it is damaged.
func (s *Store) Open() (err error) {
	if abs, err := filepath.Abs(s.Path); err == nil {
		s.Path = abs
	}
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o700); err != nil {
		return fmt.Errorf("create ledger directory: %w", err)
	}
	s.db, err = openBolt(s.Path, &bolt.Options{
		Timeout:         s.LockTimeout,
		FreelistType:    bolt.FreelistMapType,
		MaxSize:         s.MaxSize,
		InitialMmapSize: 64 << 20,
		NoSync:          s.UnsafeNoSync,
	})
	if err != nil {
		return err
	}
	if err := quickCheck(s.db, s.Path); err != nil {
		s.db.Close()
		s.db = nil
		return err
	}
	if err := s.db.Update(s.initBuckets); err != nil {
		s.db.Close()
		s.db = nil
		return fmt.Errorf("ledger %s: %w", s.Path, err)
	}
	s.closed = false
	s.highWater, s.zeroTo = 0, 0
	s.appends = make(chan *appendReq, s.MaxBatch)
	s.wake = make(chan struct{}, 1)
	s.closing = make(chan struct{})
	s.done = make(chan struct{})
	s.marked = make(map[ID]mark)
	s.watchers = make(map[ID][]chan struct{})
	if err := s.loadGroups(); err != nil {
		s.db.Close()
		s.db = nil
		return err
	}
	go s.commitLoop()
	return nil
}

// openBolt opens the file, turning bbolt's lock timeout, its errors for a
// damaged file and the faults a truncated file raises into errors.
func openBolt(path string, opts *bolt.Options) (db *bolt.DB, err error) {
	// bbolt reads the file through a memory map; a file cut short faults
	// (SIGBUS) instead of returning an error. Make such faults recoverable.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				db.Close()
			}
			db, err = nil, fmt.Errorf("%w: %s cannot be read (%v); restore it from a backup or move it away", event.ErrCorrupt, path, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, opts)
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s is held by another process: another jsctl is serving data dir %s (stop it, or use another --data-dir)", event.ErrLocked, path, filepath.Dir(path))
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch),
		err != nil && strings.Contains(err.Error(), "file size too small"):
		return nil, fmt.Errorf("%w: %s: %w", event.ErrCorrupt, path, err)
	case err != nil:
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	if err := checkSize(db, path); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// quickCheck walks from every bucket's root to its first and last keys: a
// damaged root or branch page shows up here, at start, instead of as a fault
// later. It reads a handful of pages, not the file (Check does that).
func quickCheck(db *bolt.DB, path string) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s is damaged (%v); run jsctl doctor, restore a backup or move it away", event.ErrCorrupt, path, r)
		}
	}()
	return db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			c := b.Cursor()
			c.First()
			c.Last()
			return nil
		})
	})
}

// checkSize rejects a file shorter than the pages its meta page claims: a
// truncated copy would fault on first access to the missing pages.
func checkSize(db *bolt.DB, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("stat ledger: %w", err)
	}
	var want int64
	if err := db.View(func(tx *bolt.Tx) error { want = tx.Size(); return nil }); err != nil {
		return fmt.Errorf("%w: %s: %w", event.ErrCorrupt, path, err)
	}
	if fi.Size() < want {
		return fmt.Errorf("%w: %s is truncated: %d bytes, its pages need %d; restore it from a backup or move it away", event.ErrCorrupt, path, fi.Size(), want)
	}
	return nil
}

func (s *Store) initBuckets(tx *bolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	v := meta.Get(keySchema)
	if v == nil {
		return meta.Put(keySchema, binary.AppendUvarint(nil, schemaVersion))
	}
	switch got, _ := binary.Uvarint(v); got {
	case schemaVersion:
		return nil
	case 1:
		// The new buckets were created above. Events that finished under
		// schema 1 have no finished entry yet: the retention passes add
		// them, starting from the first key.
		if err := meta.Put(keyFinishedBackfill, []byte{}); err != nil {
			return err
		}
		return meta.Put(keySchema, binary.AppendUvarint(nil, schemaVersion))
	default:
		return fmt.Errorf("schema version %d, this jsctl reads 1 and %d", got, schemaVersion)
	}
}

// Close commits what is queued, stops the committer and closes the file.
// Appends after Close fail with event.ErrUnavailable.
func (s *Store) Close() error {
	if s.db == nil {
		return nil
	}
	s.closeMu.Lock()
	already := s.closed
	s.closed = true
	s.closeMu.Unlock()
	if already {
		return nil
	}
	close(s.closing)
	<-s.done
	return s.db.Close()
}

// Check runs bbolt's consistency check and returns the first problem found.
func (s *Store) Check() error {
	return s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("%w: %w", event.ErrCorrupt, err)
		}
		return nil
	})
}

// storageError classifies a failed commit.
func storageError(err error) error {
	if errors.Is(err, berrors.ErrMaxSizeReached) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", event.ErrFull, err)
	}
	return fmt.Errorf("commit ledger: %w", err)
}
