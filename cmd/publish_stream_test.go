package cmd

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"google.golang.org/grpc/codes"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// TestPublishEventsOrderAndErrors sends a burst of events on one stream,
// with bad requests and idempotent retries among them, before reading any
// answer: the answers come in request order, the bad ones carry their error
// in band without ending the stream, the events are published in request
// order, and every acked event is PUBLISHED in the ledger and in the stream
// exactly once.
func TestPublishEventsOrderAndErrors(t *testing.T) {
	a := startApp(t, testConfig(t, t.TempDir()))
	c, _ := dialApp(t, a)
	stream, err := c.PublishEvents(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000 // more than one stream's in-flight window
	type want struct {
		code codes.Code // OK for an ack
		key  string     // idempotency key, if any
	}
	reqs := make([]*pb.NewEventRequest, n)
	wants := make([]want, n)
	for i := range n {
		req := &pb.NewEventRequest{EventType: "order.created", Payload: fmt.Appendf(nil, "event %d", i)}
		switch i % 100 {
		case 7:
			req.EventType = "bad type" // invalid subject
			wants[i].code = codes.InvalidArgument
		case 49:
			req.IdempotencyKey = fmt.Sprintf("key-%d", i)
		case 50: // a retry of the event just before
			req.IdempotencyKey = fmt.Sprintf("key-%d", i-1)
			req.Payload = fmt.Appendf(nil, "event %d", i-1)
		case 77: // that key again with another body
			req.IdempotencyKey = fmt.Sprintf("key-%d", i-28)
			wants[i].code = codes.AlreadyExists
		}
		if req.IdempotencyKey != "" && wants[i].code == codes.OK {
			wants[i].key = req.IdempotencyKey
		}
		reqs[i] = req
	}
	// Send everything before reading: the server reads ahead up to its
	// in-flight window, then waits for the answers to be taken.
	sent := make(chan error, 1)
	go func() {
		for i, req := range reqs {
			if err := stream.Send(req); err != nil {
				sent <- fmt.Errorf("send %d: %w", i, err)
				return
			}
		}
		sent <- stream.CloseSend()
	}()

	acked := map[string]int{} // correlation ID -> request index
	byKey := map[string]string{}
	var lastSeq uint64
	for i := range n {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv %d: %v", i, err)
		}
		if code := codes.Code(resp.GetError().GetCode()); code != wants[i].code {
			t.Fatalf("answer %d: code %v (%q), want %v", i, code, resp.GetError().GetMessage(), wants[i].code)
		}
		if wants[i].code != codes.OK {
			if resp.GetAck() || resp.GetError().GetMessage() == "" {
				t.Fatalf("answer %d: ack=%v with error %q", i, resp.GetAck(), resp.GetError().GetMessage())
			}
			continue
		}
		ev := resp.GetEvent()
		if !resp.GetAck() || ev.GetStatus() != pb.Status_STATUS_PUBLISHED || ev.GetStreamSequence() == 0 {
			t.Fatalf("answer %d: ack=%v status %v seq %d", i, resp.GetAck(), ev.GetStatus(), ev.GetStreamSequence())
		}
		if k := wants[i].key; k != "" {
			if first, ok := byKey[k]; ok {
				if ev.GetCorrelationId() != first {
					t.Fatalf("answer %d: retry with key %s gave %s, want %s", i, k, ev.GetCorrelationId(), first)
				}
				continue
			}
			byKey[k] = ev.GetCorrelationId()
		}
		if _, dup := acked[ev.GetCorrelationId()]; dup {
			t.Fatalf("answer %d: correlation ID %s acked twice", i, ev.GetCorrelationId())
		}
		acked[ev.GetCorrelationId()] = i
		// One stream's events are published in request order.
		if ev.GetStreamSequence() <= lastSeq {
			t.Fatalf("answer %d: stream sequence %d after %d: not in request order", i, ev.GetStreamSequence(), lastSeq)
		}
		lastSeq = ev.GetStreamSequence()
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last answer: %v, want EOF", err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	// Every acked event is in the stream once, and nothing else is.
	ids := streamMsgIDs(t, a)
	if len(ids) != len(acked) {
		t.Fatalf("stream holds %d messages, %d events were acked", len(ids), len(acked))
	}
	for _, id := range ids {
		if _, ok := acked[id]; !ok {
			t.Fatalf("stream holds %s, which was not acked", id)
		}
	}
	for id, i := range acked {
		if i%97 != 0 {
			continue // a sample is enough
		}
		st := getStatus(t, c, id)
		if st.GetStatus() != pb.Status_STATUS_PUBLISHED || string(st.GetEvent().GetPayload()) != fmt.Sprintf("event %d", i) {
			t.Fatalf("EventStatus(%s) = %v %q, want PUBLISHED %q", id, st.GetStatus(), st.GetEvent().GetPayload(), fmt.Sprintf("event %d", i))
		}
	}
}
