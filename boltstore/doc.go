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
// queued in order and ride along with a later commit; they never cost a
// commit of their own under load. Consumer outcomes go with the next commit;
// PUBLISHED marks wait up to MarkDelay (20 ms) or until MarkBatch (2048) are
// queued, so that hundreds share the index pages they touch. Get sees marks
// from the moment they are made. If the process dies before the commit, the event is still ACCEPTED in
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
// # Retention
//
// Events that are done are removed after Retention says (PROCESSED 7 days
// and FAILED 30 days after they got there, PUBLISHED never, by default),
// by bounded passes of the committer: at most 256 records per transaction,
// then a round of appends, then the next pass, so an append never waits
// for more than one of them. Each removed event leaves a tombstone, so Get
// can say it expired, when, and in which status; tombstones are forgotten
// after Retention.Tombstones, and the newest ID among those forgotten is
// kept as a watermark, so Get can still say that an older ID expired or
// never existed. Every error for a missing event wraps event.ErrNotFound.
// With Retention.DropProcessedPayloads an event's payload is dropped when it
// becomes PROCESSED (only a FAILED event can be redriven, and it keeps its
// payload).
//
// # Buckets and keys
//
// IDs are UUIDv7 (16 bytes, time-ordered), so keys are appended in order and
// range scans by time are cheap.
//
//	meta         "schema" -> uvarint schema version (2; Open upgrades 1)
//	             "expired_before" -> varint Unix nanoseconds: the newest
//	             creation time among the IDs whose tombstones were forgotten
//	             "finished_backfill" -> the last status index key done, while
//	             events finished under schema 1 are added to finished
//	events       id -> body: created_at, type, idempotency key, headers, payload
//	             (written once; rewritten only to drop the payload of a
//	             PROCESSED event, with Retention.DropProcessedPayloads)
//	state        id -> overall status, stream sequence, history, per-group
//	             statuses, finished time, flags (absent while the event is
//	             ACCEPTED: its status and history are implied)
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
//	finished     status byte + 8-byte big-endian Unix nanoseconds + id ->
//	             empty: when the event became PROCESSED or FAILED (the time
//	             is also in its state, so the entry goes when a redrive
//	             reopens it). Retention seeks each status's range from its
//	             start; PUBLISHED events expire by creation, in by_status.
//	tombstones   id -> status byte + varint Unix nanoseconds of the removal
//	tombstone_expiry  8-byte big-endian removal time + id -> empty, oldest
//	             first, for forgetting tombstones
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
//
// The committer keeps zeroed, allocated space ahead of bbolt's high-water
// mark (prealloc.go), so the file is up to 16 MiB larger than its pages
// (never beyond MaxSize).
//
// Open upgrades a schema 1 file (written before retention) in place; a jsctl
// that reads only schema 1 then refuses the file, naming schema version 2.
package boltstore
