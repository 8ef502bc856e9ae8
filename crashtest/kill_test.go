package crashtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// record is the client's own account of what jsctl acknowledged.
type record struct {
	mu        sync.Mutex
	acked     map[string]uint64    // correlation ID -> stream sequence in the ack
	processed map[string]bool      // acked by our subscriber, confirmed
	seen      map[string]pb.Status // highest status observed
	checked   int                  // acked events verified so far, in order
	order     []string
	ackFloor  uint64 // JetStream's ack floor of the group, checked up to here
}

func newRecord() *record {
	return &record{acked: map[string]uint64{}, processed: map[string]bool{}, seen: map[string]pb.Status{}}
}

func (r *record) ack(id string, seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.acked[id]; !ok {
		r.order = append(r.order, id)
	}
	r.acked[id] = seq
}

func (r *record) markProcessed(id string) {
	r.mu.Lock()
	r.processed[id] = true
	r.mu.Unlock()
}

// writeConfig declares the consumer group and the NATS port the test scans
// the stream through.
func writeConfig(t *testing.T, natsAddr string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "jsctl.yaml")
	body := fmt.Sprintf("nats:\n  listen: %s\n  token: crash-test\ngroups:\n  - name: crash\n    ack_wait: 2s\n", natsAddr)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestKillLoop: load, SIGKILL at a random moment, restart, verify; repeat.
func TestKillLoop(t *testing.T) {
	plain, _ := build(t)
	dir := filepath.Join(t.TempDir(), "data")
	addr, natsAddr := freeAddr(t), freeAddr(t)
	cfg := writeConfig(t, natsAddr)
	cc, client := dial(t, addr)
	rec := newRecord()
	var slowest time.Duration

	for cycle := 0; cycle <= *cycles; cycle++ {
		srv := start(t, plain, dir, addr, "JSCTL_CONFIG="+cfg)
		took := srv.waitServing(cc)
		slowest = max(slowest, took)
		if took > 5*time.Second {
			t.Fatalf("cycle %d: restart to SERVING took %s, want under 5s", cycle, took)
		}
		verify(t, client, rec, cycle == *cycles)
		assertAcksRecorded(t, natsAddr, client, rec)
		assertNoneAccepted(t, client)
		if cycle == *cycles {
			scanStream(t, natsAddr, rec)
			srv.kill()
			break
		}
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() { produce(ctx, client, rec) })
		}
		for range 2 {
			wg.Go(func() { consume(ctx, client, rec) })
		}
		time.Sleep(time.Duration(100+rand.IntN(700)) * time.Millisecond) // a random moment
		srv.kill()
		stop()
		wg.Wait()
		checkLedger(t, dir)
	}
	t.Logf("%d cycles: %d events acknowledged, %d processed by the subscriber, 0 lost; slowest restart to SERVING %s",
		*cycles, len(rec.acked), len(rec.processed), slowest.Round(time.Millisecond))
}

// produce publishes until ctx ends and records every ack.
func produce(ctx context.Context, client pb.ControllerClient, rec *record) {
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := client.NewEvent(cctx, &pb.NewEventRequest{EventType: "crash.test", Payload: []byte("payload")})
		cancel()
		if err == nil && resp.GetAck() {
			rec.ack(resp.GetEvent().GetCorrelationId(), resp.GetEvent().GetStreamSequence())
		}
	}
}

// consume acks the group's deliveries until ctx ends and records each
// confirmed ack.
func consume(ctx context.Context, client pb.ControllerClient, rec *record) {
	stream, err := client.Subscribe(ctx)
	if err != nil {
		return
	}
	if err := stream.Send(&pb.SubscribeRequest{Request: &pb.SubscribeRequest_Open{Open: &pb.SubscribeOpen{Group: "crash", MaxInFlight: 32}}}); err != nil {
		return
	}
	ids := map[string]string{}
	for {
		d, err := stream.Recv()
		if err != nil {
			return
		}
		if r := d.GetSettled(); r != nil {
			if r.GetCode() == 0 {
				rec.markProcessed(ids[r.GetDeliveryId()])
			}
			delete(ids, r.GetDeliveryId())
			continue
		}
		ids[d.GetDeliveryId()] = d.GetCorrelationId()
		st := &pb.Settle{DeliveryId: d.GetDeliveryId(), Action: pb.SettleAction_SETTLE_ACTION_ACK}
		if err := stream.Send(&pb.SubscribeRequest{Request: &pb.SubscribeRequest_Settle{Settle: st}}); err != nil {
			return
		}
	}
}

// verify checks, after a restart, every event acknowledged since the last
// check and a sample of older ones (all of them when full): present, past
// ACCEPTED, at the acknowledged sequence, never gone backwards, PROCESSED if
// our subscriber's ack was confirmed.
func verify(t *testing.T, client pb.ControllerClient, rec *record, full bool) {
	t.Helper()
	verifyEvents(t, client, rec, full, true)
}

// verifyEvents is verify; with sameSequence false an event may have moved to
// a new sequence (published again after the stream lost its tail).
func verifyEvents(t *testing.T, client pb.ControllerClient, rec *record, full, sameSequence bool) {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	ids := append([]string{}, rec.order[rec.checked:]...)
	if full {
		ids = rec.order
	} else {
		for range min(200, rec.checked) {
			ids = append(ids, rec.order[rand.IntN(rec.checked)])
		}
	}
	rec.checked = len(rec.order)
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := client.EventStatus(ctx, &pb.EventStatusRequest{CorrelationId: id})
		cancel()
		if err != nil {
			t.Fatalf("acknowledged event %s: %v", id, err)
		}
		got := st.GetStatus()
		if got <= pb.Status_STATUS_ACCEPTED {
			t.Fatalf("acknowledged event %s is %v after restart", id, got)
		}
		if seq := st.GetEvent().GetStreamSequence(); sameSequence && seq != rec.acked[id] {
			t.Fatalf("acknowledged event %s at sequence %d, the ack said %d", id, seq, rec.acked[id])
		}
		if prev := rec.seen[id]; got < prev || (prev == pb.Status_STATUS_PROCESSED && got != prev) {
			t.Fatalf("event %s went from %v back to %v", id, prev, got)
		}
		if rec.processed[id] && got != pb.Status_STATUS_PROCESSED {
			t.Fatalf("event %s: our subscriber's ack was confirmed, but it is %v", id, got)
		}
		rec.seen[id] = got
	}
}

// natsJetStream connects to jsctl's NATS port as a native client and
// returns a context for a minute of calls; done closes both.
func natsJetStream(t *testing.T, natsAddr string) (js jetstream.JetStream, ctx context.Context, done func()) {
	t.Helper()
	nc, err := nats.Connect("nats://"+natsAddr, nats.Token("crash-test"))
	if err != nil {
		t.Fatal(err)
	}
	if js, err = jetstream.New(nc); err != nil {
		nc.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	return js, ctx, func() { cancel(); nc.Close() }
}

// assertAcksRecorded checks that every event JetStream holds as acked by
// the group (at or below the consumer's ack floor, as restored after the
// restart) is PROCESSED in the ledger: jsctl records an ack durably before
// it passes it to JetStream. (FAILED is allowed for an event whose
// deliveries ran out; JetStream moves its floor past those too.)
func assertAcksRecorded(t *testing.T, natsAddr string, client pb.ControllerClient, rec *record) {
	t.Helper()
	js, ctx, done := natsJetStream(t, natsAddr)
	defer done()
	c, err := js.Consumer(ctx, "EVENTS", "crash")
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	floor := info.AckFloor.Stream
	rec.mu.Lock()
	defer rec.mu.Unlock()
	checked := 0
	for id, seq := range rec.acked {
		if seq <= rec.ackFloor || seq > floor {
			continue
		}
		st, err := client.EventStatus(ctx, &pb.EventStatusRequest{CorrelationId: id})
		if err != nil {
			t.Fatalf("event %s: %v", id, err)
		}
		if got := st.GetStatus(); got != pb.Status_STATUS_PROCESSED && got != pb.Status_STATUS_FAILED {
			t.Fatalf("event %s at sequence %d is acked in JetStream (ack floor %d) but %v in the ledger", id, seq, floor, got)
		}
		checked++
	}
	rec.ackFloor = max(rec.ackFloor, floor)
	t.Logf("ack floor %d: %d more events acked in JetStream, all recorded", floor, checked)
}

// scanStream reads every message of the stream over NATS and checks that
// each acknowledged event is there exactly once.
func scanStream(t *testing.T, natsAddr string, rec *record) {
	t.Helper()
	js, ctx, done := natsJetStream(t, natsAddr)
	defer done()
	s, err := js.Stream(ctx, "EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	total := s.CachedInfo().State.Msgs
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{HeadersOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for range total {
		m, err := c.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("scan stream: %v", err)
		}
		count[m.Headers().Get(jetstream.MsgIDHeader)]++
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for id := range rec.acked {
		if n := count[id]; n != 1 {
			t.Fatalf("acknowledged event %s is %d times in the stream, want once", id, n)
		}
	}
	for id, n := range count {
		if n > 1 {
			t.Fatalf("message id %s is %d times in the stream", id, n)
		}
	}
}
