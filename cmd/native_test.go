package cmd

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// TestNativeClientMovesStatus: a plain nats.go client over TCP binds to a
// jsctl group's durable consumer; its acks and terminations move the statuses
// as gRPC subscribers' do (tracked from JetStream's ack metrics and advisories).
func TestNativeClientMovesStatus(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.NATS.Token = "s3cret"
	cfg.Groups = []GroupConfig{{Name: "native"}}
	a := startApp(t, cfg)
	c, _ := dialApp(t, a)

	nc, err := nats.Connect(a.nats.ClientURL(), nats.Token("s3cret"))
	if err != nil {
		t.Fatalf("native client over TCP: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctxT(t), "EVENTS", "native")
	if err != nil {
		t.Fatal(err)
	}
	fetchOne := func() jetstream.Msg {
		t.Helper()
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			return m
		}
		t.Fatalf("no message: %v", batch.Error())
		return nil
	}

	acked := publish(t, c, &pb.NewEventRequest{EventType: "order.created"}).GetCorrelationId()
	m := fetchOne()
	if m.Headers().Get(jetstream.MsgIDHeader) != acked {
		t.Fatalf("native client got msg-id %q, want %s", m.Headers().Get(jetstream.MsgIDHeader), acked)
	}
	if err := m.DoubleAck(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	st := waitStatus(t, c, acked, pb.Status_STATUS_PROCESSED)
	if gs := groupStatus(st, "native"); gs.GetStatus() != pb.Status_STATUS_PROCESSED || gs.GetDeliveryCount() != 1 {
		t.Fatalf("group status %v", gs)
	}

	termed := publish(t, c, &pb.NewEventRequest{EventType: "order.created"}).GetCorrelationId()
	m = fetchOne()
	if err := m.TermWithReason("bad payload"); err != nil {
		t.Fatal(err)
	}
	st = waitStatus(t, c, termed, pb.Status_STATUS_FAILED)
	if gs := groupStatus(st, "native"); gs.GetLastReason() != "bad payload" {
		t.Fatalf("group status %v", gs)
	}

	t.Run("ErrWrongToken", func(t *testing.T) {
		if nc, err := nats.Connect(a.nats.ClientURL(), nats.Token("wrong")); err == nil {
			nc.Close()
			t.Fatal("connected with a wrong token")
		}
	})
}

// TestStatusSurvivesRestartMidFlow: an event delivered but not settled is
// still DELIVERED after a restart, is delivered again, and ends PROCESSED.
func TestStatusSurvivesRestartMidFlow(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Groups = []GroupConfig{{Name: "mid", AckWait: 500 * time.Millisecond}}
	a := startApp(t, cfg)
	c, _ := dialApp(t, a)
	sub := subscribe(t, c, "mid", nil, 10)
	id := publish(t, c, &pb.NewEventRequest{EventType: "a"}).GetCorrelationId()
	sub.next()
	waitStatus(t, c, id, pb.Status_STATUS_DELIVERED)
	sub.cancel()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	b := startApp(t, cfg)
	c, _ = dialApp(t, b)
	if st := getStatus(t, c, id); st.GetStatus() != pb.Status_STATUS_DELIVERED {
		t.Fatalf("after restart: %v", st.GetStatus())
	}
	sub = subscribe(t, c, "mid", nil, 10)
	d := sub.next()
	if d.GetCorrelationId() != id || d.GetDeliveryCount() < 2 {
		t.Fatalf("after restart got %v", d)
	}
	sub.ack(d)
	st := waitStatus(t, c, id, pb.Status_STATUS_PROCESSED)
	if gs := groupStatus(st, "mid"); gs.GetDeliveryCount() != d.GetDeliveryCount() {
		t.Fatalf("group status %v, want %d deliveries", gs, d.GetDeliveryCount())
	}
}

func TestListEvents(t *testing.T) {
	_, c := consumerApp(t, GroupConfig{Name: "l"})
	sub := subscribe(t, c, "l", nil, 100)
	var failed []string
	for i := range 6 {
		typ := "order.created"
		if i%2 == 1 {
			typ = "refund.created"
		}
		id := publish(t, c, &pb.NewEventRequest{EventType: typ}).GetCorrelationId()
		d := sub.next()
		if i < 2 {
			sub.settle(d, pb.SettleAction_SETTLE_ACTION_TERMINATE, 0, "no")
			failed = append(failed, id)
			waitStatus(t, c, id, pb.Status_STATUS_FAILED)
		} else {
			sub.ack(d)
			waitStatus(t, c, id, pb.Status_STATUS_PROCESSED)
		}
	}
	resp, err := c.ListEvents(ctxT(t), &pb.ListEventsRequest{Status: pb.Status_STATUS_FAILED})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(resp.GetEvents()); len(got) != 2 || got[0] != failed[0] || got[1] != failed[1] {
		t.Fatalf("failed events %v, want %v", got, failed)
	}
	resp, err = c.ListEvents(ctxT(t), &pb.ListEventsRequest{EventTypePrefix: "refund."})
	if err != nil || len(resp.GetEvents()) != 3 {
		t.Fatalf("refund events: %v %v", resp, err)
	}
	// Pages of 4 then 2.
	page1, err := c.ListEvents(ctxT(t), &pb.ListEventsRequest{PageSize: 4})
	if err != nil || len(page1.GetEvents()) != 4 || page1.GetNextPageToken() == "" {
		t.Fatalf("page 1: %v %v", page1, err)
	}
	page2, err := c.ListEvents(ctxT(t), &pb.ListEventsRequest{PageSize: 4, PageToken: page1.GetNextPageToken()})
	if err != nil || len(page2.GetEvents()) != 2 || page2.GetNextPageToken() != "" {
		t.Fatalf("page 2: %v %v", page2, err)
	}
	t.Run("ErrBadToken", func(t *testing.T) {
		_, err := c.ListEvents(ctxT(t), &pb.ListEventsRequest{PageToken: "zz"})
		if statusCode(err).String() != "InvalidArgument" {
			t.Fatalf("bad token: %v", err)
		}
	})
}

func ids(events []*pb.Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.GetCorrelationId())
	}
	return out
}
