package rpc

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jsctl/jsctl/event"
	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

func eventFromRequest(r *pb.NewEventRequest) *event.Event {
	return &event.Event{
		Type:           r.GetEventType(),
		Payload:        r.GetPayload(),
		Headers:        r.GetHeaders(),
		IdempotencyKey: r.GetIdempotencyKey(),
	}
}

func eventToProto(e *event.Event, withPayload bool) *pb.Event {
	out := &pb.Event{
		CorrelationId:  e.ID.String(),
		EventType:      e.Type,
		StreamSequence: e.Sequence,
		CreatedAt:      timestamppb.New(e.CreatedAt),
		Status:         pb.Status(e.Status),
		Headers:        e.Headers,
	}
	if withPayload {
		out.Payload = e.Payload
	}
	return out
}

func statusResponse(e *event.Event, withPayload bool) *pb.EventStatusResponse {
	out := &pb.EventStatusResponse{
		Status: pb.Status(e.Status),
		Event:  eventToProto(e, withPayload),
	}
	for _, g := range e.Groups {
		out.Groups = append(out.Groups, &pb.GroupStatus{
			Group:         g.Group,
			Status:        pb.Status(g.Status),
			DeliveryCount: g.Deliveries,
			LastReason:    g.LastReason,
			UpdatedAt:     timestamppb.New(g.UpdatedAt),
		})
	}
	for _, t := range e.History {
		out.History = append(out.History, &pb.Transition{
			From:           pb.Status(t.From),
			To:             pb.Status(t.To),
			Time:           timestamppb.New(t.Time),
			Group:          t.Group,
			Reason:         t.Reason,
			DeliveryCount:  t.Deliveries,
			StreamSequence: t.Sequence,
		})
	}
	return out
}
