package cmd

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jsctl/jsctl/event"
	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// subscriber is a test client of Subscribe: deliveries and settle results
// arrive on their own channels.
type subscriber struct {
	t          *testing.T
	stream     pb.Controller_SubscribeClient
	cancel     context.CancelFunc
	deliveries chan *pb.Delivery
	results    chan *pb.SettleResult
	ended      chan error
}

func subscribe(t *testing.T, c pb.ControllerClient, group string, filters []string, maxInFlight uint32) *subscriber {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := c.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.SubscribeRequest{Request: &pb.SubscribeRequest_Open{Open: &pb.SubscribeOpen{Group: group, Filters: filters, MaxInFlight: maxInFlight}}}); err != nil {
		t.Fatal(err)
	}
	s := &subscriber{t: t, stream: stream, cancel: cancel, deliveries: make(chan *pb.Delivery, 1000), results: make(chan *pb.SettleResult, 1000), ended: make(chan error, 1)}
	go func() {
		for {
			d, err := stream.Recv()
			if err != nil {
				s.ended <- err
				return
			}
			if d.GetSettled() != nil {
				s.results <- d.GetSettled()
			} else {
				s.deliveries <- d
			}
		}
	}()
	t.Cleanup(cancel)
	return s
}

// next waits for the next delivery.
func (s *subscriber) next() *pb.Delivery {
	s.t.Helper()
	select {
	case d := <-s.deliveries:
		return d
	case err := <-s.ended:
		s.t.Fatalf("stream ended: %v", err)
	case <-time.After(10 * time.Second):
		s.t.Fatal("no delivery within 10s")
	}
	return nil
}

// settle sends a settle and waits for its result.
func (s *subscriber) settle(d *pb.Delivery, action pb.SettleAction, delay time.Duration, reason string) *pb.SettleResult {
	s.t.Helper()
	st := &pb.Settle{DeliveryId: d.GetDeliveryId(), Action: action, Reason: reason}
	if delay > 0 {
		st.Delay = durationpb.New(delay)
	}
	if err := s.stream.Send(&pb.SubscribeRequest{Request: &pb.SubscribeRequest_Settle{Settle: st}}); err != nil {
		s.t.Fatal(err)
	}
	select {
	case r := <-s.results:
		return r
	case err := <-s.ended:
		s.t.Fatalf("stream ended: %v", err)
	case <-time.After(10 * time.Second):
		s.t.Fatal("no settle result within 10s")
	}
	return nil
}

func (s *subscriber) ack(d *pb.Delivery) {
	s.t.Helper()
	if r := s.settle(d, pb.SettleAction_SETTLE_ACTION_ACK, 0, ""); r.GetCode() != 0 {
		s.t.Fatalf("ack %s: %v", d.GetDeliveryId(), r)
	}
}

// consumerApp starts an app with the given consumer groups declared.
func consumerApp(t *testing.T, groups ...GroupConfig) (*App, pb.ControllerClient) {
	t.Helper()
	cfg := testConfig(t, t.TempDir())
	cfg.Groups = groups
	a := startApp(t, cfg)
	c, _ := dialApp(t, a)
	return a, c
}

// waitStatus polls EventStatus until the event has the status.
func waitStatus(t *testing.T, c pb.ControllerClient, id string, want pb.Status) *pb.EventStatusResponse {
	t.Helper()
	var st *pb.EventStatusResponse
	deadline := time.Now().Add(10 * time.Second)
	for {
		st = getStatus(t, c, id)
		if st.GetStatus() == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: status %v after 10s, want %v; history %v", id, st.GetStatus(), want, st.GetHistory())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func groupStatus(st *pb.EventStatusResponse, group string) *pb.GroupStatus {
	for _, g := range st.GetGroups() {
		if g.GetGroup() == group {
			return g
		}
	}
	return nil
}

func TestFanOutAndSharedWork(t *testing.T) {
	_, c := consumerApp(t,
		GroupConfig{Name: "billing", Filters: []string{"order.>"}},
		GroupConfig{Name: "audit", Filters: []string{"*.created"}},
	)
	billing1 := subscribe(t, c, "billing", nil, 5)
	var ids []string
	for i := range 20 {
		ids = append(ids, publish(t, c, &pb.NewEventRequest{EventType: "order.created", Payload: []byte(fmt.Sprint(i))}).GetCorrelationId())
	}
	// billing1 holds 5 unsettled deliveries, so billing2 must take the rest.
	var held []*pb.Delivery
	for range 5 {
		held = append(held, billing1.next())
	}
	billing2 := subscribe(t, c, "billing", nil, 50)
	audit := subscribe(t, c, "audit", nil, 50)

	seen := map[string]int{}
	for range 15 {
		d := billing2.next()
		seen[d.GetCorrelationId()]++
		billing2.ack(d)
	}
	for _, d := range held {
		seen[d.GetCorrelationId()]++
		billing1.ack(d)
	}
	for range 20 {
		d := audit.next()
		if d.GetGroup() != "audit" || d.GetEventType() != "order.created" {
			t.Fatalf("audit delivery %v", d)
		}
		audit.ack(d)
	}
	if len(seen) != 20 {
		t.Fatalf("billing's subscribers saw %d distinct events, want 20 (%v)", len(seen), seen)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("%s delivered %d times within billing", id, n)
		}
	}
	for _, id := range ids {
		st := waitStatus(t, c, id, pb.Status_STATUS_PROCESSED)
		for _, g := range []string{"billing", "audit"} {
			if gs := groupStatus(st, g); gs.GetStatus() != pb.Status_STATUS_PROCESSED || gs.GetDeliveryCount() != 1 {
				t.Fatalf("%s in %s: %v", id, g, gs)
			}
		}
	}
}

func TestNakRedeliversAfterDelayThenAck(t *testing.T) {
	_, c := consumerApp(t, GroupConfig{Name: "work"})
	sub := subscribe(t, c, "work", nil, 10)
	id := publish(t, c, &pb.NewEventRequest{EventType: "job.run"}).GetCorrelationId()

	d := sub.next()
	if d.GetCorrelationId() != id || d.GetDeliveryCount() != 1 {
		t.Fatalf("first delivery %v", d)
	}
	nakAt := time.Now()
	if r := sub.settle(d, pb.SettleAction_SETTLE_ACTION_NAK, 300*time.Millisecond, "busy"); r.GetCode() != 0 {
		t.Fatalf("nak: %v", r)
	}
	d2 := sub.next()
	if d2.GetCorrelationId() != id || d2.GetDeliveryCount() != 2 {
		t.Fatalf("redelivery %v", d2)
	}
	if waited := time.Since(nakAt); waited < 300*time.Millisecond {
		t.Fatalf("redelivered after %s, before the 300ms nak delay", waited)
	}
	sub.ack(d2)
	st := waitStatus(t, c, id, pb.Status_STATUS_PROCESSED)
	if gs := groupStatus(st, "work"); gs.GetDeliveryCount() != 2 {
		t.Fatalf("group status %v, want 2 deliveries", gs)
	}
	if !historyHas(st, "work", "nak: busy") {
		t.Fatalf("history lacks the nak: %v", st.GetHistory())
	}
}

func historyHas(st *pb.EventStatusResponse, group, reason string) bool {
	for _, h := range st.GetHistory() {
		if h.GetGroup() == group && strings.Contains(h.GetReason(), reason) {
			return true
		}
	}
	return false
}

func TestNakFollowsBackoff(t *testing.T) {
	_, c := consumerApp(t, GroupConfig{Name: "slow", Backoff: []time.Duration{200 * time.Millisecond, 400 * time.Millisecond}, MaxDeliveries: 3})
	sub := subscribe(t, c, "slow", nil, 10)
	publish(t, c, &pb.NewEventRequest{EventType: "job.run"})
	d := sub.next()
	start := time.Now()
	sub.settle(d, pb.SettleAction_SETTLE_ACTION_NAK, 0, "")
	d = sub.next()
	if waited := time.Since(start); waited < 200*time.Millisecond || d.GetDeliveryCount() != 2 {
		t.Fatalf("second delivery after %s (count %d), want >= 200ms (backoff[0])", waited, d.GetDeliveryCount())
	}
	start = time.Now()
	sub.settle(d, pb.SettleAction_SETTLE_ACTION_NAK, 0, "")
	d = sub.next()
	if waited := time.Since(start); waited < 400*time.Millisecond || d.GetDeliveryCount() != 3 {
		t.Fatalf("third delivery after %s (count %d), want >= 400ms (backoff[1])", waited, d.GetDeliveryCount())
	}
	sub.ack(d)
}

func TestMaxDeliveriesFails(t *testing.T) {
	_, c := consumerApp(t, GroupConfig{Name: "flaky", MaxDeliveries: 2})
	sub := subscribe(t, c, "flaky", nil, 10)
	id := publish(t, c, &pb.NewEventRequest{EventType: "job.run"}).GetCorrelationId()
	for range 2 {
		sub.settle(sub.next(), pb.SettleAction_SETTLE_ACTION_NAK, 0, "boom")
	}
	st := waitStatus(t, c, id, pb.Status_STATUS_FAILED)
	gs := groupStatus(st, "flaky")
	if gs.GetStatus() != pb.Status_STATUS_FAILED || !strings.Contains(gs.GetLastReason(), "max deliveries (2) reached") {
		t.Fatalf("group status %v", gs)
	}
}

func TestTerminateFailsWithReason(t *testing.T) {
	_, c := consumerApp(t, GroupConfig{Name: "strict"})
	sub := subscribe(t, c, "strict", nil, 10)
	e := publish(t, c, &pb.NewEventRequest{EventType: "job.run", Payload: []byte("keep me")})
	if r := sub.settle(sub.next(), pb.SettleAction_SETTLE_ACTION_TERMINATE, 0, "schema mismatch"); r.GetCode() != 0 {
		t.Fatalf("terminate: %v", r)
	}
	st := waitStatus(t, c, e.GetCorrelationId(), pb.Status_STATUS_FAILED)
	if gs := groupStatus(st, "strict"); gs.GetLastReason() != "schema mismatch" {
		t.Fatalf("group status %v", gs)
	}
	if string(st.GetEvent().GetPayload()) != "keep me" {
		t.Fatalf("failed event lost its payload: %q", st.GetEvent().GetPayload())
	}
}

func TestSettleUnknownDeliveryKeepsStream(t *testing.T) {
	_, c := consumerApp(t, GroupConfig{Name: "g"})
	sub := subscribe(t, c, "g", nil, 10)
	if r := sub.settle(&pb.Delivery{DeliveryId: "nope"}, pb.SettleAction_SETTLE_ACTION_ACK, 0, ""); r.GetCode() != int32(codes.FailedPrecondition) {
		t.Fatalf("unknown delivery: %v", r)
	}
	publish(t, c, &pb.NewEventRequest{EventType: "a"})
	d := sub.next()
	sub.ack(d)
	if r := sub.settle(d, pb.SettleAction_SETTLE_ACTION_ACK, 0, ""); r.GetCode() != int32(codes.FailedPrecondition) {
		t.Fatalf("second ack: %v", r)
	}
	publish(t, c, &pb.NewEventRequest{EventType: "a"})
	sub.ack(sub.next()) // still alive
}

func TestRedriveReachesOnlyItsGroup(t *testing.T) {
	_, c := consumerApp(t, GroupConfig{Name: "ship"}, GroupConfig{Name: "mail"})
	ship := subscribe(t, c, "ship", nil, 10)
	mail := subscribe(t, c, "mail", nil, 10)
	id := publish(t, c, &pb.NewEventRequest{EventType: "order.paid", Payload: []byte("p")}).GetCorrelationId()
	ship.settle(ship.next(), pb.SettleAction_SETTLE_ACTION_TERMINATE, 0, "warehouse down")
	mail.ack(mail.next())
	waitStatus(t, c, id, pb.Status_STATUS_FAILED)

	resp, err := c.Redrive(ctxT(t), &pb.RedriveRequest{CorrelationId: id})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStreamSequence() == 0 || resp.GetStatus().GetStatus() == pb.Status_STATUS_FAILED {
		t.Fatalf("redrive response %v", resp)
	}
	d := ship.next()
	if d.GetCorrelationId() != id || d.GetDeliveryCount() != 1 || string(d.GetPayload()) != "p" || d.GetEventType() != "order.paid" {
		t.Fatalf("redrive delivery %v", d)
	}
	ship.ack(d)
	st := waitStatus(t, c, id, pb.Status_STATUS_PROCESSED)
	if !historyHas(st, "ship", "redrive attempt 1") {
		t.Fatalf("history lacks the redrive: %v", st.GetHistory())
	}
	// mail must not see the redrive: its next delivery is the next event.
	marker := publish(t, c, &pb.NewEventRequest{EventType: "marker"}).GetCorrelationId()
	if d := mail.next(); d.GetCorrelationId() != marker {
		t.Fatalf("mail got %v, want only the marker", d)
	}

	t.Run("ErrNotFailed", func(t *testing.T) {
		_, err := c.Redrive(ctxT(t), &pb.RedriveRequest{CorrelationId: id})
		if code := statusCode(err); code != codes.FailedPrecondition {
			t.Fatalf("redrive of a processed event: %v", err)
		}
	})
}

func TestWatchEventSeesDeliveredThenProcessed(t *testing.T) {
	_, c := consumerApp(t, GroupConfig{Name: "w"})
	id := publish(t, c, &pb.NewEventRequest{EventType: "a"}).GetCorrelationId()
	watch, err := c.WatchEvent(ctxT(t), &pb.EventStatusRequest{CorrelationId: id})
	if err != nil {
		t.Fatal(err)
	}
	first, err := watch.Recv()
	if err != nil || first.GetStatus() != pb.Status_STATUS_PUBLISHED {
		t.Fatalf("first watch message %v %v", first, err)
	}
	sub := subscribe(t, c, "w", nil, 10)
	d := sub.next()
	var seen []pb.Status
	for {
		st, err := watch.Recv()
		if err != nil {
			t.Fatalf("watch ended after %v: %v", seen, err)
		}
		seen = append(seen, st.GetStatus())
		if st.GetStatus() == pb.Status_STATUS_DELIVERED && len(seen) == 1 {
			sub.ack(d)
		}
		if st.GetStatus() == pb.Status_STATUS_PROCESSED {
			break
		}
	}
	if seen[0] != pb.Status_STATUS_DELIVERED {
		t.Fatalf("watch saw %v, want DELIVERED first", seen)
	}
	if _, err := watch.Recv(); err == nil {
		t.Fatal("watch did not end after PROCESSED")
	}
}

func TestDisconnectRedeliversToAnotherSubscriber(t *testing.T) {
	_, c := consumerApp(t, GroupConfig{Name: "r", AckWait: 300 * time.Millisecond})
	first := subscribe(t, c, "r", nil, 10)
	id := publish(t, c, &pb.NewEventRequest{EventType: "a"}).GetCorrelationId()
	if d := first.next(); d.GetCorrelationId() != id {
		t.Fatalf("first got %v", d)
	}
	first.cancel() // goes away without settling
	second := subscribe(t, c, "r", nil, 10)
	d := second.next()
	if d.GetCorrelationId() != id || d.GetDeliveryCount() != 2 {
		t.Fatalf("second got %v, want the same event as delivery 2", d)
	}
	second.ack(d)
	waitStatus(t, c, id, pb.Status_STATUS_PROCESSED)
}

func TestSubscribeCreatesGroup(t *testing.T) {
	a, c := consumerApp(t)
	sub := subscribe(t, c, "adhoc", []string{"order.*"}, 10)
	waitFor(t, 10*time.Second, func() bool { _, ok := a.ledger.Group("adhoc"); return ok })
	publish(t, c, &pb.NewEventRequest{EventType: "refund.created"}) // not matched
	id := publish(t, c, &pb.NewEventRequest{EventType: "order.created"}).GetCorrelationId()
	d := sub.next()
	if d.GetCorrelationId() != id {
		t.Fatalf("got %v, want the order event only", d)
	}
	sub.ack(d)
	waitStatus(t, c, id, pb.Status_STATUS_PROCESSED)

	t.Run("ErrOtherFilters", func(t *testing.T) {
		other := subscribe(t, c, "adhoc", []string{"refund.*"}, 10)
		select {
		case err := <-other.ended:
			if code := statusCode(err); code != codes.FailedPrecondition {
				t.Fatalf("reopen with other filters: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("stream not ended")
		}
	})
}

// TestMaxDeliveriesByAckTimeout: a subscriber that never settles exhausts the
// deliveries by ack timeouts; JetStream's MAX_DELIVERIES advisory fails the
// event.
func TestMaxDeliveriesByAckTimeout(t *testing.T) {
	_, c := consumerApp(t, GroupConfig{Name: "silent", MaxDeliveries: 2, AckWait: 200 * time.Millisecond})
	sub := subscribe(t, c, "silent", nil, 10)
	id := publish(t, c, &pb.NewEventRequest{EventType: "a"}).GetCorrelationId()
	for want := uint32(1); want <= 2; want++ {
		if d := sub.next(); d.GetCorrelationId() != id || d.GetDeliveryCount() != want {
			t.Fatalf("delivery %d: %v", want, d)
		}
	}
	st := waitStatus(t, c, id, pb.Status_STATUS_FAILED)
	if gs := groupStatus(st, "silent"); !strings.Contains(gs.GetLastReason(), "max deliveries (2) reached") {
		t.Fatalf("group status %v", gs)
	}
}

// TestRedeliveryOfSettledEventIsSettledAgain: an ack or terminate that is
// durable in the ledger but never reached JetStream (jsctl died in between,
// or the ack was lost) comes back as a redelivery. jsctl settles it with
// JetStream as the ledger has it, does not hand it out again, and the
// event's status and history stay as they were.
func TestRedeliveryOfSettledEventIsSettledAgain(t *testing.T) {
	a, c := consumerApp(t, GroupConfig{Name: "r", AckWait: 300 * time.Millisecond})
	cons, err := a.queue.JetStream().Consumer(ctxT(t), a.Config.NATS.Stream, "r")
	if err != nil {
		t.Fatal(err)
	}
	sub := subscribe(t, c, "r", nil, 10)
	for _, tc := range []struct {
		name    string
		outcome event.Outcome
		want    pb.Status
	}{
		{"Processed", event.OutcomeAcked, pb.Status_STATUS_PROCESSED},
		{"Failed", event.OutcomeTerminated, pb.Status_STATUS_FAILED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := publish(t, c, &pb.NewEventRequest{EventType: "a"}).GetCorrelationId()
			d := sub.next()
			if d.GetCorrelationId() != id {
				t.Fatalf("got %v, want %s", d, id)
			}
			// What Pipeline.Ack and Terminate record, without telling JetStream.
			eid, _ := event.ParseID(id)
			u := event.GroupUpdate{ID: eid, Group: "r", Outcome: tc.outcome, Deliveries: 1, Sequence: d.GetStreamSequence(), Time: time.Now(), Reason: "recorded, not passed on"}
			if err := a.ledger.RecordGroupSync(ctxT(t), u); err != nil {
				t.Fatal(err)
			}
			before := waitStatus(t, c, id, tc.want)

			// JetStream delivers it again after the ack wait; jsctl settles it.
			waitFor(t, 10*time.Second, func() bool {
				info, err := cons.Info(ctxT(t))
				return err == nil && info.NumAckPending == 0
			})
			marker := publish(t, c, &pb.NewEventRequest{EventType: "marker"}).GetCorrelationId()
			next := sub.next()
			if next.GetCorrelationId() != marker {
				t.Fatalf("got %v, want only the marker (the settled event must not be handed out again)", next)
			}
			sub.ack(next)
			after := getStatus(t, c, id)
			if after.GetStatus() != tc.want || len(after.GetHistory()) != len(before.GetHistory()) {
				t.Fatalf("after the redelivery: %v with history %v, want %v with history %v", after.GetStatus(), after.GetHistory(), tc.want, before.GetHistory())
			}
			if gs := groupStatus(after, "r"); gs.GetDeliveryCount() != 1 {
				t.Fatalf("group status %v, want 1 delivery", gs)
			}
		})
	}
}
