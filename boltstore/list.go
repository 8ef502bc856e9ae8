package boltstore

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/jsctl/jsctl/event"
)

// maxScan bounds how many index entries one List call reads, so that a
// selective filter cannot turn a page into a scan of the whole ledger; the
// page then ends early with a token to continue.
const maxScan = 100_000

// List implements event.GroupLedger. Events come oldest first. With a status,
// it reads the status index; otherwise the events in ID (time) order. The
// page token is the hex ID of the last event returned.
func (s *Store) List(q event.ListQuery) ([]*event.Event, string, error) {
	after, err := parseToken(q.PageToken)
	if err != nil {
		return nil, "", err
	}
	lo, hi := timeKey(q.Since, false), timeKey(q.Until, true)
	if after != nil && (lo == nil || string(after) >= string(lo)) {
		lo = nextKey(after)
	}
	var ids []ID
	var last []byte
	err = s.db.View(func(tx *bolt.Tx) error {
		var c *bolt.Cursor
		var prefix []byte
		if q.Status != event.StatusUnspecified {
			c, prefix = tx.Bucket(bucketByStatus).Cursor(), []byte{byte(q.Status)}
		} else {
			c = tx.Bucket(bucketEvents).Cursor()
		}
		events := tx.Bucket(bucketEvents)
		scanned := 0
		for k, _ := c.Seek(append(prefix, lo...)); k != nil; k, _ = c.Next() {
			if len(prefix) > 0 && k[0] != prefix[0] {
				break
			}
			id := k[len(prefix):]
			if hi != nil && string(id) > string(hi) {
				break
			}
			if scanned++; scanned > maxScan {
				return nil // last is the previous key: the next page resumes here
			}
			last = bytes.Clone(id) // bbolt's memory is valid only in the transaction
			if q.TypePrefix != "" && !strings.HasPrefix(typeOf(events.Get(id)), q.TypePrefix) {
				continue
			}
			ids = append(ids, ID(id))
			if len(ids) == q.Limit {
				return nil
			}
		}
		last = nil // reached the end
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	out := make([]*event.Event, 0, len(ids))
	for _, id := range ids {
		e, err := s.Get(id, false)
		if errors.Is(err, event.ErrNotFound) {
			continue // removed by retention since the scan
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, e)
	}
	next := ""
	if last != nil {
		next = hex.EncodeToString(last)
	}
	return out, next, nil
}

// typeOf reads the event type from a body record without decoding the rest.
func typeOf(body []byte) string {
	d := decoder{b: body}
	d.byte()
	d.varint()
	return d.string()
}

func parseToken(t string) ([]byte, error) {
	if t == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(t)
	if err != nil || len(b) != 16 {
		return nil, fmt.Errorf("%w: page_token %q is not one this server issued", event.ErrInvalid, t)
	}
	return b, nil
}

// timeKey is the smallest (or, with end, largest) ID of the millisecond of t;
// nil for a zero t.
func timeKey(t time.Time, end bool) []byte {
	if t.IsZero() {
		return nil
	}
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, uint64(max(t.UnixMilli(), 0))<<16)
	if end {
		for i := 6; i < 16; i++ {
			k[i] = 0xff
		}
	}
	return k
}

// nextKey is the smallest key after k.
func nextKey(k []byte) []byte {
	return append(append([]byte{}, k...), 0)
}
