package cmd

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// TestMaxInFlight: the server never has more unsettled deliveries on one
// stream than the subscriber asked for.
func TestMaxInFlight(t *testing.T) {
	_, c := consumerApp(t, GroupConfig{Name: "flow"})
	sub := subscribe(t, c, "flow", nil, 3)
	for range 10 {
		publish(t, c, &pb.NewEventRequest{EventType: "a"})
	}
	var held []*pb.Delivery
	for range 3 {
		held = append(held, sub.next())
	}
	assertNoDelivery := func() {
		t.Helper()
		select {
		case d := <-sub.deliveries:
			t.Fatalf("got delivery %s beyond max_in_flight 3", d.GetDeliveryId())
		case <-time.After(300 * time.Millisecond):
		}
	}
	assertNoDelivery()
	sub.ack(held[0])
	held = append(held[1:], sub.next())
	assertNoDelivery()
	for _, d := range held {
		sub.ack(d)
	}
	for range 6 {
		sub.ack(sub.next())
	}
}

// TestConsumerBadInput: each bad request to the consumer RPCs gets its code.
func TestConsumerBadInput(t *testing.T) {
	_, c := consumerApp(t, GroupConfig{Name: "ok"})
	openWith := func(req *pb.SubscribeRequest) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stream, err := c.Subscribe(ctx)
		if err != nil {
			return err
		}
		if err := stream.Send(req); err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	open := func(o *pb.SubscribeOpen) *pb.SubscribeRequest {
		return &pb.SubscribeRequest{Request: &pb.SubscribeRequest_Open{Open: o}}
	}
	subscribeCases := []struct {
		name string
		req  *pb.SubscribeRequest
		code codes.Code
	}{
		{"SettleFirst", &pb.SubscribeRequest{Request: &pb.SubscribeRequest_Settle{Settle: &pb.Settle{DeliveryId: "1"}}}, codes.InvalidArgument},
		{"Empty", &pb.SubscribeRequest{}, codes.InvalidArgument},
		{"EmptyGroup", open(&pb.SubscribeOpen{}), codes.InvalidArgument},
		{"GroupWithDot", open(&pb.SubscribeOpen{Group: "a.b"}), codes.InvalidArgument},
		{"GroupTooLong", open(&pb.SubscribeOpen{Group: string(make([]byte, 65))}), codes.InvalidArgument},
		{"BadFilter", open(&pb.SubscribeOpen{Group: "new1", Filters: []string{"a..b"}}), codes.InvalidArgument},
		{"FilterGreaterInside", open(&pb.SubscribeOpen{Group: "new2", Filters: []string{"a.>.b"}}), codes.InvalidArgument},
		{"MaxInFlightTooLarge", open(&pb.SubscribeOpen{Group: "ok", MaxInFlight: 100000}), codes.InvalidArgument},
	}
	for _, tc := range subscribeCases {
		t.Run("Subscribe/"+tc.name, func(t *testing.T) {
			if got := statusCode(openWith(tc.req)); got != tc.code {
				t.Fatalf("code %v, want %v", got, tc.code)
			}
		})
	}

	unknown := "01900000-0000-7000-8000-000000000000"
	t.Run("WatchEvent/MalformedID", func(t *testing.T) {
		w, err := c.WatchEvent(ctxT(t), &pb.EventStatusRequest{CorrelationId: "nope"})
		if err == nil {
			_, err = w.Recv()
		}
		if statusCode(err) != codes.InvalidArgument {
			t.Fatalf("%v", err)
		}
	})
	t.Run("WatchEvent/UnknownID", func(t *testing.T) {
		w, err := c.WatchEvent(ctxT(t), &pb.EventStatusRequest{CorrelationId: unknown})
		if err == nil {
			_, err = w.Recv()
		}
		if statusCode(err) != codes.NotFound {
			t.Fatalf("%v", err)
		}
	})
	redriveCases := []struct {
		name string
		req  *pb.RedriveRequest
		code codes.Code
	}{
		{"MalformedID", &pb.RedriveRequest{CorrelationId: "x"}, codes.InvalidArgument},
		{"UnknownID", &pb.RedriveRequest{CorrelationId: unknown}, codes.NotFound},
	}
	for _, tc := range redriveCases {
		t.Run("Redrive/"+tc.name, func(t *testing.T) {
			if _, err := c.Redrive(ctxT(t), tc.req); statusCode(err) != tc.code {
				t.Fatalf("%v, want %v", err, tc.code)
			}
		})
	}
	t.Run("Redrive/NotFailed", func(t *testing.T) {
		id := publish(t, c, &pb.NewEventRequest{EventType: "a"}).GetCorrelationId()
		if _, err := c.Redrive(ctxT(t), &pb.RedriveRequest{CorrelationId: id, Group: "ok"}); statusCode(err) != codes.FailedPrecondition {
			t.Fatalf("%v", err)
		}
	})
	listCases := []struct {
		name string
		req  *pb.ListEventsRequest
	}{
		{"UnknownStatus", &pb.ListEventsRequest{Status: 42}},
		{"PageTooLarge", &pb.ListEventsRequest{PageSize: 5000}},
		{"BadToken", &pb.ListEventsRequest{PageToken: "not-hex"}},
	}
	for _, tc := range listCases {
		t.Run("ListEvents/"+tc.name, func(t *testing.T) {
			if _, err := c.ListEvents(ctxT(t), tc.req); statusCode(err) != codes.InvalidArgument {
				t.Fatalf("%v", err)
			}
		})
	}
	// After all that, the service works.
	sub := subscribe(t, c, "ok", nil, 1)
	publish(t, c, &pb.NewEventRequest{EventType: "a"})
	sub.ack(sub.next())
}
