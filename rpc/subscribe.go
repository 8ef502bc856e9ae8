package rpc

import (
	"context"
	"errors"
	"io"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jsctl/jsctl/event"
	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

const (
	defaultMaxInFlight = 64
	maxMaxInFlight     = 4096
)

// settled is the outcome of one settle, done off the stream's loop.
type settled struct {
	id  string
	act pb.SettleAction
	err error
}

// pendingAck is an ack waiting to be recorded.
type pendingAck struct {
	id string
	d  *event.Delivery
}

// Subscribe implements pb.ControllerServer. One goroutine owns the stream's
// sends and its table of unsettled deliveries; fetches, receives and settles
// run beside it and report back through channels. Acks are recorded in
// batches, one at a time per stream: every ack that arrives while a batch is
// being recorded joins the next one, so they share a ledger commit.
func (s *Server) Subscribe(stream pb.Controller_SubscribeServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil {
		return status.Error(codes.InvalidArgument, "invalid argument: the first Subscribe request must carry open")
	}
	max := int(open.GetMaxInFlight())
	switch {
	case max == 0:
		max = defaultMaxInFlight
	case max > maxMaxInFlight:
		return status.Errorf(codes.InvalidArgument, "invalid argument: max_in_flight %d is over %d", max, maxMaxInFlight)
	}
	g, err := s.events.OpenGroup(ctx, open.GetGroup(), open.GetFilters())
	if err != nil {
		return toStatus(s.log, "Subscribe", err)
	}

	settles := make(chan *pb.Settle)
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case settles <- req.GetSettle():
			case <-ctx.Done():
				return
			}
		}
	}()

	arrivals := make(chan *event.Delivery, max)
	fetchDone := make(chan error, 1) // buffered: a fetch never blocks on a finished stream
	results := make(chan settled, max)
	acked := make(chan []settled, 1)
	inflight := map[string]*event.Delivery{} // sent, not settled
	settling := map[string]bool{}            // a settle is under way
	var acks []pendingAck                    // waiting for the next batch
	acking := false                          // a batch is being recorded
	fetching := false
	var next uint64

	for {
		if !acking && len(acks) > 0 {
			acking = true
			batch := acks
			acks = nil
			go func() { acked <- s.ack(ctx, batch) }()
		}
		if !fetching && len(inflight) < max {
			fetching = true
			n := max - len(inflight)
			go func() {
				fetchDone <- s.events.Fetch(ctx, g.Name, n, func(d *event.Delivery) {
					select {
					case arrivals <- d:
					case <-ctx.Done(): // the stream is gone; JetStream delivers it again
					}
				})
			}()
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.quit:
			return status.Error(codes.Unavailable, "server is stopping; unsettled deliveries will be delivered again")
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case err := <-fetchDone:
			fetching = false
			if err != nil && ctx.Err() == nil {
				s.log.Warn("fetch failed", "group", g.Name, "err", err)
				return toStatus(s.log, "Subscribe", event.ErrUnavailable)
			}
		case d := <-arrivals:
			next++
			id := strconv.FormatUint(next, 10)
			inflight[id] = d
			if err := stream.Send(deliveryToProto(id, d)); err != nil {
				return err
			}
		case st := <-settles:
			if st == nil {
				if err := stream.Send(settleReply(&pb.Settle{}, codes.InvalidArgument, "after open, every request must carry settle")); err != nil {
					return err
				}
				continue
			}
			d, ok := inflight[st.GetDeliveryId()]
			switch {
			case !ok:
				err = stream.Send(settleReply(st, codes.FailedPrecondition, "unknown or already settled delivery"))
			case settling[st.GetDeliveryId()]:
				err = stream.Send(settleReply(st, codes.FailedPrecondition, "delivery is being settled"))
			case st.GetAction() < pb.SettleAction_SETTLE_ACTION_ACK || st.GetAction() > pb.SettleAction_SETTLE_ACTION_TERMINATE:
				err = stream.Send(settleReply(st, codes.InvalidArgument, "action must be ACK, NAK, IN_PROGRESS or TERMINATE"))
			case st.GetAction() == pb.SettleAction_SETTLE_ACTION_ACK:
				settling[st.GetDeliveryId()] = true
				acks = append(acks, pendingAck{st.GetDeliveryId(), d})
			default:
				settling[st.GetDeliveryId()] = true
				go func() {
					results <- settled{st.GetDeliveryId(), st.GetAction(), s.settle(ctx, d, st)}
				}()
			}
			if err != nil {
				return err
			}
		case r := <-results:
			if err := s.settledReply(stream, inflight, settling, r); err != nil {
				return err
			}
		case rs := <-acked:
			acking = false
			for _, r := range rs {
				if err := s.settledReply(stream, inflight, settling, r); err != nil {
					return err
				}
			}
		}
	}
}

// settledReply retires a finished settle and answers it.
func (s *Server) settledReply(stream pb.Controller_SubscribeServer, inflight map[string]*event.Delivery, settling map[string]bool, r settled) error {
	delete(settling, r.id)
	if r.err == nil && r.act != pb.SettleAction_SETTLE_ACTION_IN_PROGRESS {
		delete(inflight, r.id)
	}
	code, msg := codes.OK, ""
	if r.err != nil {
		st := status.Convert(toStatus(s.log, "Subscribe", r.err))
		code, msg = st.Code(), st.Message()
	}
	return stream.Send(settleReply(&pb.Settle{DeliveryId: r.id, Action: r.act}, code, msg))
}

// ack records a batch of acks in one ledger commit and passes them to
// JetStream.
func (s *Server) ack(ctx context.Context, batch []pendingAck) []settled {
	ds := make([]*event.Delivery, len(batch))
	for i, a := range batch {
		ds[i] = a.d
	}
	err := s.events.Ack(ctx, ds...)
	out := make([]settled, len(batch))
	for i, a := range batch {
		out[i] = settled{a.id, pb.SettleAction_SETTLE_ACTION_ACK, err}
	}
	return out
}

// settle carries out one settle request other than ack.
func (s *Server) settle(ctx context.Context, d *event.Delivery, st *pb.Settle) error {
	switch st.GetAction() {
	case pb.SettleAction_SETTLE_ACTION_NAK:
		return s.events.Nak(ctx, d, st.GetDelay().AsDuration(), st.GetReason())
	case pb.SettleAction_SETTLE_ACTION_IN_PROGRESS:
		return d.Settler.InProgress()
	default:
		return s.events.Terminate(ctx, d, st.GetReason())
	}
}

func settleReply(st *pb.Settle, code codes.Code, msg string) *pb.Delivery {
	return &pb.Delivery{DeliveryId: st.GetDeliveryId(), Settled: &pb.SettleResult{
		DeliveryId: st.GetDeliveryId(), Action: st.GetAction(), Code: int32(code), Message: msg,
	}}
}

func deliveryToProto(id string, d *event.Delivery) *pb.Delivery {
	out := &pb.Delivery{
		DeliveryId:     id,
		EventType:      d.Type,
		Payload:        d.Payload,
		Headers:        d.Headers,
		StreamSequence: d.Sequence,
		DeliveryCount:  d.Deliveries,
		Group:          d.Group,
	}
	if d.ID != (event.ID{}) {
		out.CorrelationId = d.ID.String()
	}
	return out
}
