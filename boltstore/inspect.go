package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/jsctl/jsctl/event"
)

// Inspection is what Inspect found in a ledger file.
type Inspection struct {
	Path     string
	Bytes    int64
	Schema   uint64 // 1 until a jsctl with retention opens the file
	Events   int
	ByStatus map[event.Status]int
	// Tombstones counts the expired events whose IDs are still remembered.
	Tombstones int
	// Problems lists bbolt consistency errors, at most 20.
	Problems []string
	// Published maps each event's own stream sequence to its ID.
	Published map[uint64]ID
}

// Inspect reads the ledger at path offline, read-only: bbolt's full
// consistency check, counts by status, and the sequence index. It fails with
// event.ErrLocked while a jsctl serves the file.
func Inspect(path string) (*Inspection, error) {
	db, err := openInspect(path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	in := &Inspection{Path: path, ByStatus: map[event.Status]int{}, Published: map[uint64]ID{}}
	err = db.View(func(tx *bolt.Tx) error {
		in.Bytes = tx.Size()
		for err := range tx.Check() {
			if len(in.Problems) < 20 {
				in.Problems = append(in.Problems, err.Error())
			}
		}
		if len(in.Problems) > 0 {
			return nil // the buckets may not be readable
		}
		required := allBuckets
		if meta := tx.Bucket(bucketMeta); meta != nil {
			in.Schema, _ = binary.Uvarint(meta.Get(keySchema))
		}
		if in.Schema == 1 {
			required = schema1Buckets // the next start adds the others
		}
		for _, name := range required {
			if tx.Bucket(name) == nil {
				in.Problems = append(in.Problems, fmt.Sprintf("bucket %s is missing", name))
			}
		}
		if len(in.Problems) > 0 {
			return nil
		}
		c := tx.Bucket(bucketByStatus).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			in.ByStatus[event.Status(k[0])]++
			in.Events++
		}
		c = tx.Bucket(bucketSequences).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(v) == len(ID{}) {
				in.Published[binary.BigEndian.Uint64(k)] = ID(v)
			}
		}
		if b := tx.Bucket(bucketTombstones); b != nil {
			in.Tombstones = b.Stats().KeyN
		}
		return nil
	})
	return in, err
}

func openInspect(path string) (db *bolt.DB, err error) {
	db, err = openBolt(path, &bolt.Options{ReadOnly: true, Timeout: 500 * time.Millisecond})
	if errors.Is(err, event.ErrLocked) || errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s is in use: stop the jsctl serving data dir %s first (doctor reads the files offline)", event.ErrLocked, path, filepath.Dir(path))
	}
	return db, err
}
