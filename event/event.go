package event

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
)

// ID is an event's correlation ID: a UUIDv7, so IDs sort by creation time.
type ID uuid.UUID

// NewID returns a new time-ordered ID.
func NewID() (ID, error) {
	u, err := uuid.NewV7()
	return ID(u), err
}

// ParseID parses the canonical 36-character form of a UUIDv7. It returns an error
// wrapping ErrInvalid for anything else.
func ParseID(s string) (ID, error) {
	if s == "" {
		return ID{}, fmt.Errorf("%w: correlation_id is empty", ErrInvalid)
	}
	if len(s) != 36 {
		return ID{}, fmt.Errorf("%w: correlation_id %.64q is not a UUID (want 36 characters like 0192f0c4-8f3a-7c3e-9d1a-2b4c6d8e0f12)", ErrInvalid, s)
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return ID{}, fmt.Errorf("%w: correlation_id %q is not a UUID", ErrInvalid, s)
	}
	if u.Version() != 7 {
		return ID{}, fmt.Errorf("%w: correlation_id %q is a version %d UUID; jsctl issues version 7", ErrInvalid, s, u.Version())
	}
	return ID(u), nil
}

// String returns the canonical form, for example 0192f0c4-8f3a-7c3e-9d1a-2b4c6d8e0f12.
func (id ID) String() string { return uuid.UUID(id).String() }

// Time returns the creation time encoded in the ID, to the millisecond.
func (id ID) Time() time.Time {
	ms := int64(binary.BigEndian.Uint64(id[:8]) >> 16)
	return time.UnixMilli(ms)
}

// Status is where an event is in its life cycle.
type Status uint8

// Statuses, in life-cycle order. The numeric values match the API's enum.
const (
	StatusUnspecified Status = iota
	StatusAccepted
	StatusPublished
	StatusDelivered
	StatusProcessed
	StatusFailed
)

var statusNames = [...]string{"UNSPECIFIED", "ACCEPTED", "PUBLISHED", "DELIVERED", "PROCESSED", "FAILED"}

// String returns the status name, for example "PUBLISHED".
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", s)
}

// Terminal reports whether no further transition is expected.
func (s Status) Terminal() bool { return s == StatusProcessed || s == StatusFailed }

// Event is one event as the ledger records it.
type Event struct {
	ID             ID
	Type           string
	Payload        []byte
	Headers        map[string]string
	IdempotencyKey string
	CreatedAt      time.Time

	Status   Status
	Sequence uint64 // stream sequence, 0 until published
	History  []Transition
	Groups   []GroupStatus
}

// Transition is one change of status, of the event as a whole (Group empty) or
// of the event in one consumer group.
type Transition struct {
	From       Status
	To         Status
	Time       time.Time
	Group      string
	Reason     string
	Deliveries uint32
	Sequence   uint64
}

// GroupStatus is the status of an event in one consumer group.
type GroupStatus struct {
	Group      string
	Status     Status
	Deliveries uint32
	LastReason string
	UpdatedAt  time.Time
	// Sequence is the stream sequence of the message the group works on:
	// the event's own, or its latest redrive. Reports about other messages
	// of the event are stale.
	Sequence uint64
}

// BodyHash identifies what a producer sent: type, headers and payload. Two
// requests with the same idempotency key must have the same BodyHash.
func (e *Event) BodyHash() [sha256.Size]byte {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	field := func(b []byte) {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))])
		h.Write(b)
	}
	field([]byte(e.Type))
	keys := make([]string, 0, len(e.Headers))
	for k := range e.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		field([]byte(k))
		field([]byte(e.Headers[k]))
	}
	field(e.Payload)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}
