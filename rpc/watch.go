package rpc

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jsctl/jsctl/event"
	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// WatchEvent implements pb.ControllerServer.
func (s *Server) WatchEvent(req *pb.EventStatusRequest, stream pb.Controller_WatchEventServer) error {
	id, err := event.ParseID(req.GetCorrelationId())
	if err != nil {
		return toStatus(s.log, "WatchEvent", err)
	}
	changed, stop := s.events.Watch(id) // before the first read: no change is missed
	defer stop()
	sent := -1
	for {
		e, err := s.events.Event(id, req.GetIncludePayload())
		if err != nil {
			return toStatus(s.log, "WatchEvent", err)
		}
		if len(e.History) != sent {
			if err := stream.Send(statusResponse(e, req.GetIncludePayload())); err != nil {
				return err
			}
			sent = len(e.History)
		}
		if e.Status.Terminal() {
			return nil
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		case <-s.quit:
			return status.Error(codes.Unavailable, "server is stopping")
		}
	}
}
