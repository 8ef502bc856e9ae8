package rpc

import (
	"errors"
	"io"

	"google.golang.org/grpc/status"

	"github.com/jsctl/jsctl/event"
	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

const (
	// maxStreamInFlight bounds the events of one PublishEvents stream being
	// published at once; the stream's reader waits beyond it.
	maxStreamInFlight = 1024
	// maxStreamBatch bounds the events published together (see
	// PublishEvents).
	maxStreamBatch = 256
)

// PublishEvents implements pb.ControllerServer, in three stages, so that
// the stream never waits for one event before reading the next:
//
//   - a reader receives requests, holding one of maxStreamInFlight slots for
//     each;
//   - a batcher takes every request already received (up to maxStreamBatch)
//     and runs event.Pipeline.StartBatch on them: they share one wait for
//     the ledger commit, and their publishes start in request order. While
//     it waits for the commit, more requests arrive for the next batch;
//   - this goroutine waits for each batch's acknowledgements, sends the
//     answers in request order and frees the slots.
//
// Events of one stream are therefore stored and published in request order.
// Alone, an event is a batch of one and waits for nothing else; under load
// the batches grow and the cost per event falls.
func (s *Server) PublishEvents(stream pb.Controller_PublishEventsServer) error {
	ctx := stream.Context()
	slots := make(chan struct{}, maxStreamInFlight)
	received := make(chan *pb.NewEventRequest, maxStreamInFlight)
	recvErr := make(chan error, 1)
	go func() {
		defer close(received)
		for {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			req, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					recvErr <- err
				}
				return
			}
			received <- req // never blocks: one slot per request
		}
	}()
	batches := make(chan *event.Batch, maxStreamInFlight) // a batch holds >= 1 slot
	go func() {
		defer close(batches)
		for req := range received {
			evs := append(make([]*event.Event, 0, 8), eventFromRequest(req))
			batches <- s.events.StartBatch(takeReceived(received, evs))
		}
	}()
	for b := range batches {
		for _, r := range b.Wait(ctx) {
			if err := ctx.Err(); err != nil {
				return status.FromContextError(err).Err()
			}
			if err := stream.Send(streamResponse(s, r)); err != nil {
				return err
			}
			<-slots
		}
	}
	select {
	case err := <-recvErr:
		return err
	default:
		return nil
	}
}

// takeReceived adds the requests already received, without waiting, up to
// maxStreamBatch events.
func takeReceived(received <-chan *pb.NewEventRequest, evs []*event.Event) []*event.Event {
	for len(evs) < maxStreamBatch {
		select {
		case req, ok := <-received:
			if !ok {
				return evs
			}
			evs = append(evs, eventFromRequest(req))
		default:
			return evs
		}
	}
	return evs
}

// streamResponse is one event's answer on a PublishEvents stream: its ack,
// or its error in band.
func streamResponse(s *Server, r event.PublishResult) *pb.NewEventResponse {
	if r.Err != nil {
		st := status.Convert(toStatus(s.log, "PublishEvents", r.Err))
		return &pb.NewEventResponse{Error: &pb.EventError{Code: int32(st.Code()), Message: st.Message()}}
	}
	return &pb.NewEventResponse{Ack: true, Event: eventToProto(r.Event, false)}
}
