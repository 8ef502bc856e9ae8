package event

import "errors"

// Sentinel errors. Errors returned by this package and by the adapters wrap one
// of these when the cause is known; callers check them with errors.Is. The
// message of a wrapped client error is safe to show to the client.
var (
	// ErrInvalid is returned when a request breaks a rule: a bad event type,
	// payload, header, idempotency key or correlation ID.
	ErrInvalid = errors.New("invalid argument")

	// ErrNotFound is returned when no event has the given correlation ID.
	ErrNotFound = errors.New("not found")

	// ErrConflict is returned when an idempotency key is reused with a
	// different body.
	ErrConflict = errors.New("conflict")

	// ErrFull is returned when the ledger cannot store more (size limit or disk
	// full). Nothing was stored.
	ErrFull = errors.New("ledger full")

	// ErrUnavailable is returned when the service cannot complete a request
	// right now (starting, stopping, JetStream not acknowledging). Retrying
	// with the same idempotency key is safe.
	ErrUnavailable = errors.New("unavailable")

	// ErrLocked is returned when another process holds the ledger.
	ErrLocked = errors.New("ledger locked")

	// ErrCorrupt is returned when the ledger file is damaged.
	ErrCorrupt = errors.New("ledger corrupt")
)
