// Package boltstore is jsctl's ledger: a bbolt file that records every event, its
// status and history, and the idempotency keys, with group commit.
//
// # Basics
//
// Store implements event.Ledger. Open it, Append events, MarkPublished them,
// Get them; Close it. Every write goes through one committer goroutine: the
// requests waiting at the moment it starts a transaction share that transaction
// and its fsync, with no fixed delay. Under load one fsync covers hundreds of
// events; alone, an event waits for exactly one commit.
//
// Status updates (the PUBLISHED mark, and what consumer groups did) are
// queued in order and ride along with the next commit; they never cost a
// commit of their own under load. Get sees marks from the moment they are
// made. If the process dies before the commit, the event is still ACCEPTED in
// the file and start-up recovery finds it in the stream or publishes it
// again. A caller that must know an update is durable (an ack, before it is
// passed to JetStream) uses RecordGroupSync, which waits for the commit; the
// updates of one call share a commit.
//
// Each group's status moves forward only (PUBLISHED -> DELIVERED ->
// PROCESSED | FAILED), except that a redrive reopens a failed group; the
// overall status is derived from the groups interested in the event (see
// event.Summarize). Watch signals every change of an event.
//
// # Buckets and keys
//
// IDs are UUIDv7 (16 bytes, time-ordered), so keys are appended in order and
// range scans by time are cheap.
//
//	meta         "schema" -> uvarint schema version (1)
//	events       id -> body: created_at, type, idempotency key, headers, payload
//	             (written once, never rewritten)
//	state        id -> overall status, stream sequence, history, per-group
//	             statuses (absent while the event is ACCEPTED: its status and
//	             history are implied)
//	by_status    status byte + id -> for ACCEPTED the uvarint floor: the stream's
//	             last sequence before the event was appended (recovery scans the
//	             stream from the lowest floor, never the whole ledger); empty
//	             for other statuses. Lists events by status without a scan.
//	sequences    8-byte big-endian stream sequence -> id (the event's own
//	             message), or id + group name (a redrive message). Maps
//	             JetStream advisories to events, and finds events the stream
//	             lost after a power cut by seeking past its last sequence.
//	idem         idempotency key -> id (16 bytes) + SHA-256 of the body (32 bytes)
//	idem_expiry  id -> idempotency key, oldest first, for expiry
//	groups       group name -> consumer group settings and start sequence
//
// Values are a compact binary encoding (codec.go) that starts with a version
// byte; no protobuf or JSON is stored.
//
// # Caveats
//
// A Store is used by one process: Open takes bbolt's file lock and fails after
// LockTimeout with an error wrapping event.ErrLocked. Running out of space
// (MaxSize or a full disk) fails the writes of that commit with event.ErrFull;
// nothing of them is stored and later commits succeed once space is free.
package boltstore
