// Package event is jsctl's domain: events and their statuses, the rules an event
// must follow, the errors clients can get, and the Pipeline that turns a request
// into an acknowledged event by coordinating the ledger and the queue.
//
// # Basics
//
// An Event is created ACCEPTED when the ledger has made it durable, becomes
// PUBLISHED when JetStream has acknowledged it, and later DELIVERED, PROCESSED or
// FAILED as consumers settle it:
//
//	ACCEPTED -> PUBLISHED -> DELIVERED -> PROCESSED | FAILED
//
// The Pipeline talks to two small interfaces, Ledger and Queue. Adapters
// (boltstore, embedded) implement them; only cmd wires them together.
//
// # Errors
//
// Every error a client can cause wraps one of the sentinels in error.go
// (ErrInvalid, ErrNotFound, ...); the transport maps sentinels to its own codes in
// one place. Anything else is an internal error.
package event
