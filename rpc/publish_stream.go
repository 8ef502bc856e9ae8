package rpc

import (
	"errors"
	"io"

	"google.golang.org/grpc/status"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// maxStreamInFlight bounds the events of one PublishEvents stream being
// published at once; the stream's reader waits beyond it.
const maxStreamInFlight = 1024

// PublishEvents implements pb.ControllerServer. A reader goroutine starts
// each event's publish as its request arrives; this goroutine sends the
// answers in request order.
func (s *Server) PublishEvents(stream pb.Controller_PublishEventsServer) error {
	ctx := stream.Context()
	type pending struct {
		done chan struct{}
		resp *pb.NewEventResponse
	}
	queue := make(chan *pending, maxStreamInFlight)
	recvErr := make(chan error, 1)
	go func() {
		defer close(queue)
		for {
			req, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					recvErr <- err
				}
				return
			}
			p := &pending{done: make(chan struct{})}
			select {
			case queue <- p:
			case <-ctx.Done():
				return
			}
			go func() {
				defer close(p.done)
				e, err := s.events.Publish(ctx, eventFromRequest(req))
				if err != nil {
					st := status.Convert(toStatus(s.log, "PublishEvents", err))
					p.resp = &pb.NewEventResponse{Error: &pb.EventError{Code: int32(st.Code()), Message: st.Message()}}
					return
				}
				p.resp = &pb.NewEventResponse{Ack: true, Event: eventToProto(e, false)}
			}()
		}
	}()
	for p := range queue {
		select {
		case <-p.done:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
		if err := stream.Send(p.resp); err != nil {
			return err
		}
	}
	select {
	case err := <-recvErr:
		return err
	default:
		return nil
	}
}
