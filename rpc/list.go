package rpc

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jsctl/jsctl/event"
	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// Redrive implements pb.ControllerServer.
func (s *Server) Redrive(ctx context.Context, req *pb.RedriveRequest) (*pb.RedriveResponse, error) {
	id, err := event.ParseID(req.GetCorrelationId())
	if err != nil {
		return nil, toStatus(s.log, "Redrive", err)
	}
	e, seq, err := s.events.Redrive(ctx, id, req.GetGroup())
	if err != nil {
		return nil, toStatus(s.log, "Redrive", err)
	}
	return &pb.RedriveResponse{Status: statusResponse(e, false), StreamSequence: seq}, nil
}

// ListEvents implements pb.ControllerServer.
func (s *Server) ListEvents(ctx context.Context, req *pb.ListEventsRequest) (*pb.ListEventsResponse, error) {
	if req.GetStatus() < 0 || req.GetStatus() > pb.Status_STATUS_FAILED {
		return nil, status.Errorf(codes.InvalidArgument, "invalid argument: unknown status %d", req.GetStatus())
	}
	if req.GetPageSize() > 1000 {
		return nil, status.Errorf(codes.InvalidArgument, "invalid argument: page_size %d is over 1000", req.GetPageSize())
	}
	q := event.ListQuery{
		Status:     event.Status(req.GetStatus()),
		TypePrefix: req.GetEventTypePrefix(),
		Limit:      int(req.GetPageSize()),
		PageToken:  req.GetPageToken(),
	}
	if req.GetSince() != nil {
		q.Since = req.GetSince().AsTime()
	}
	if req.GetUntil() != nil {
		q.Until = req.GetUntil().AsTime()
	}
	events, next, err := s.events.List(q)
	if err != nil {
		return nil, toStatus(s.log, "ListEvents", err)
	}
	out := &pb.ListEventsResponse{NextPageToken: next}
	for _, e := range events {
		out.Events = append(out.Events, eventToProto(e, false))
	}
	return out, nil
}
