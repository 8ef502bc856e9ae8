package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jsctl/jsctl/event"
)

// Record versions: the first byte of every events and state value. State
// version 2 appends the finished time and flags to version 1; both decode.
const (
	bodyVersion  = 1
	stateVersion = 2
)

var errShort = errors.New("record truncated")

// encodeBody appends e's immutable part to buf.
func encodeBody(buf []byte, e *event.Event) []byte {
	buf = append(buf, bodyVersion)
	buf = binary.AppendVarint(buf, unixNano(e.CreatedAt))
	buf = appendString(buf, e.Type)
	buf = appendString(buf, e.IdempotencyKey)
	buf = binary.AppendUvarint(buf, uint64(len(e.Headers)))
	for k, v := range e.Headers {
		buf = appendString(buf, k)
		buf = appendString(buf, v)
	}
	return append(buf, e.Payload...)
}

func bodySize(e *event.Event) int {
	n := 1 + binary.MaxVarintLen64 + 2*binary.MaxVarintLen32 + len(e.Type) + len(e.IdempotencyKey) + binary.MaxVarintLen32 + len(e.Payload)
	for k, v := range e.Headers {
		n += 2*binary.MaxVarintLen32 + len(k) + len(v)
	}
	return n
}

// decodeBody fills e from b, copying everything it keeps (b belongs to bbolt).
func decodeBody(b []byte, e *event.Event, withPayload bool) error {
	d := decoder{b: b}
	if v := d.byte(); v != bodyVersion {
		return fmt.Errorf("body record version %d, want %d", v, bodyVersion)
	}
	e.CreatedAt = timeOf(d.varint())
	e.Type = d.string()
	e.IdempotencyKey = d.string()
	if n := d.uvarint(); n > 0 && d.err == nil {
		e.Headers = make(map[string]string, min(n, 1024))
		for i := uint64(0); i < n && d.err == nil; i++ {
			k := d.string()
			e.Headers[k] = d.string()
		}
	}
	if withPayload && d.err == nil {
		e.Payload = append([]byte{}, d.b...)
	}
	return d.err
}

// state is the mutable part of an event.
type state struct {
	Status   event.Status
	Sequence uint64
	History  []event.Transition
	Groups   []event.GroupStatus

	// FinishedAt is when the ledger recorded the current overall status, if
	// it is PROCESSED or FAILED: the key of its finished index entry, from
	// which retention counts. Zero otherwise, and in version 1 records.
	FinishedAt time.Time
	// PayloadDropped is set once the body was rewritten without its payload
	// (Retention.DropProcessedPayloads).
	PayloadDropped bool
}

// State flags, the last byte of a version 2 record.
const flagPayloadDropped = 1 << 0

func encodeState(buf []byte, s *state) []byte {
	buf = append(buf, stateVersion, byte(s.Status))
	buf = binary.AppendUvarint(buf, s.Sequence)
	buf = binary.AppendUvarint(buf, uint64(len(s.History)))
	for _, t := range s.History {
		buf = append(buf, byte(t.From), byte(t.To))
		buf = binary.AppendVarint(buf, unixNano(t.Time))
		buf = appendString(buf, t.Group)
		buf = appendString(buf, t.Reason)
		buf = binary.AppendUvarint(buf, uint64(t.Deliveries))
		buf = binary.AppendUvarint(buf, t.Sequence)
	}
	buf = binary.AppendUvarint(buf, uint64(len(s.Groups)))
	for _, g := range s.Groups {
		buf = appendString(buf, g.Group)
		buf = append(buf, byte(g.Status))
		buf = binary.AppendUvarint(buf, uint64(g.Deliveries))
		buf = appendString(buf, g.LastReason)
		buf = binary.AppendVarint(buf, unixNano(g.UpdatedAt))
		buf = binary.AppendUvarint(buf, g.Sequence)
	}
	buf = binary.AppendVarint(buf, unixNano(s.FinishedAt))
	var flags byte
	if s.PayloadDropped {
		flags |= flagPayloadDropped
	}
	return append(buf, flags)
}

func decodeState(b []byte) (*state, error) {
	d := decoder{b: b}
	version := d.byte()
	if version != 1 && version != stateVersion {
		return nil, fmt.Errorf("state record version %d, want 1 or %d", version, stateVersion)
	}
	s := &state{Status: event.Status(d.byte()), Sequence: d.uvarint()}
	if n := d.uvarint(); n > 0 && d.err == nil {
		s.History = make([]event.Transition, 0, min(n, 1024))
		for i := uint64(0); i < n && d.err == nil; i++ {
			t := event.Transition{From: event.Status(d.byte()), To: event.Status(d.byte())}
			t.Time = timeOf(d.varint())
			t.Group = d.string()
			t.Reason = d.string()
			t.Deliveries = uint32(d.uvarint())
			t.Sequence = d.uvarint()
			s.History = append(s.History, t)
		}
	}
	if n := d.uvarint(); n > 0 && d.err == nil {
		s.Groups = make([]event.GroupStatus, 0, min(n, 1024))
		for i := uint64(0); i < n && d.err == nil; i++ {
			g := event.GroupStatus{Group: d.string(), Status: event.Status(d.byte())}
			g.Deliveries = uint32(d.uvarint())
			g.LastReason = d.string()
			g.UpdatedAt = timeOf(d.varint())
			g.Sequence = d.uvarint()
			s.Groups = append(s.Groups, g)
		}
	}
	if version >= 2 {
		s.FinishedAt = timeOf(d.varint())
		s.PayloadDropped = d.byte()&flagPayloadDropped != 0
	}
	return s, d.err
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// decoder reads a record; the first error sticks and later reads return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() { d.err, d.b = errShort, nil }

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// unixNano and timeOf store times as Unix nanoseconds, the zero time as 0.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func timeOf(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
