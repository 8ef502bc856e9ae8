// Package embedded runs the NATS JetStream server inside the jsctl process and
// is jsctl's queue: it provisions the EVENTS stream and publishes events to it.
//
// # Server options and why
//
//   - DontListen unless Listen is set: by default no TCP port is opened; jsctl
//     talks to the server through an in-process connection
//     (nats.InProcessServer), so nothing on the network can reach NATS.
//   - When Listen is set for native NATS clients, credentials are required
//     (user and password, or a token): an open broker port is never the default.
//   - NoSigs: jsctl owns SIGINT and SIGTERM so that it can stop the gRPC API,
//     then NATS, then close the ledger in that order.
//   - JetStream with file storage in StoreDir, which is always under jsctl's
//     data dir, never a temp dir.
//   - MaxPayload is raised to the event payload limit plus room for headers;
//     NATS's own default (1 MB) is smaller than jsctl's 1 MiB payload limit.
//   - Server logs go to slog at matching levels.
//
// # Stream
//
// Queue keeps one stream (EVENTS by default) with subjects "<prefix>.>" (prefix
// "events"), file storage and limits retention. An event of type order.created is
// published on events.order.created with Nats-Msg-Id set to its correlation ID,
// so JetStream stores a retried publish once within the duplicate window (30s by
// default). Publishes are asynchronous with many acknowledgements in flight; each
// caller waits only for its own PubAck.
//
// # Consumer groups
//
// Each group is a durable pull consumer with explicit ack, starting after the
// stream sequence recorded when the group was created, with ack sampling at
// 100% so that JetStream reports every ack. Its filters are its event types
// plus its own redrive subject, jsctl.redrive.<stream>.<group>.>, on which a
// failed event is published again for that group only. Advisories (acks, naks,
// terminations, max deliveries) of the stream's consumers are read in-process
// and reported by stream sequence.
package embedded
