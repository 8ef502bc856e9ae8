package cmd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// benchTarget is the jsctl server under test and the load to put on it.
type benchTarget struct {
	cc      *grpc.ClientConn
	client  pb.ControllerClient
	payload []byte
	load    load
	runID   string // keeps event types of separate runs apart
}

// streamWindow is how many events one PublishEvents stream keeps in flight.
const streamWindow = 256

func (b *benchTarget) publish(ctx context.Context) benchResult {
	req := &pb.NewEventRequest{EventType: "bench.publish." + b.runID, Payload: b.payload}
	return b.load.run(ctx, "publish", func(int) (func(context.Context, int) error, func()) {
		return func(ctx context.Context, _ int) error {
			resp, err := b.client.NewEvent(ctx, req)
			if err == nil && !resp.GetAck() {
				err = errors.New("ack=false")
			}
			return err
		}, nil
	})
}

// publishStreams runs the stream scenario: every worker keeps streamWindow
// events in flight on its own PublishEvents stream. onAck, if set, gets
// each acknowledged correlation ID.
func (b *benchTarget) publishStreams(ctx context.Context, name, eventType string, l load, onAck func(string)) benchResult {
	req := &pb.NewEventRequest{EventType: eventType, Payload: b.payload}
	return l.pipelined(ctx, name, streamWindow, func(int) (func(int) error, func() error, func()) {
		stream, err := b.client.PublishEvents(ctx)
		if err != nil {
			fail := func(int) error { return err }
			return fail, func() error { return err }, nil
		}
		send := func(int) error { return stream.Send(req) }
		wait := func() error {
			resp, err := stream.Recv()
			switch {
			case err != nil:
				return err
			case !resp.GetAck():
				return fmt.Errorf("ack=false: %s", resp.GetError().GetMessage())
			}
			if onAck != nil {
				onAck(resp.GetEvent().GetCorrelationId())
			}
			return nil
		}
		return send, wait, func() { stream.CloseSend() }
	})
}

func (b *benchTarget) stream(ctx context.Context) benchResult {
	return b.publishStreams(ctx, "stream", "bench.stream."+b.runID, b.load, nil)
}

// status seeds events with PublishEvents, then asks EventStatus for them
// round robin.
func (b *benchTarget) status(ctx context.Context) benchResult {
	var mu sync.Mutex
	var ids []string
	seed := load{Total: 10000, Workers: 4}
	if r := b.publishStreams(ctx, "seed", "bench.status."+b.runID, seed, func(id string) {
		mu.Lock()
		ids = append(ids, id)
		mu.Unlock()
	}); r.Errors > 0 || len(ids) == 0 {
		return benchResult{Name: "status", Errors: max(r.Errors, 1), FirstError: "seeding: " + r.FirstError}
	}
	return b.load.run(ctx, "status", func(int) (func(context.Context, int) error, func()) {
		return func(ctx context.Context, i int) error {
			_, err := b.client.EventStatus(ctx, &pb.EventStatusRequest{CorrelationId: ids[i%len(ids)]})
			return err
		}, nil
	})
}

// consumeSubscribers is how many subscribers share the group in the consume
// scenario.
const consumeSubscribers = 4

// consume publishes the events first (not timed), then measures one group's
// subscribers receiving and acking all of them. Latency is from delivery to
// the ack's confirmation.
func (b *benchTarget) consume(ctx context.Context) benchResult {
	total := b.load.Total
	if total == 0 {
		total = 100000
	}
	eventType := "bench.consume." + b.runID
	group := "bench-" + b.runID
	// The group must exist before the events: open it with one subscriber
	// and wait for a first event to come through.
	first, err := b.openSubscriber(ctx, group, eventType)
	if err != nil {
		return benchResult{Name: "consume", Errors: 1, FirstError: err.Error()}
	}
	// The server creates the group after the open arrives: publish probes
	// until one comes through, so the group surely exists. Probes are not
	// counted.
	probes, stopProbes := context.WithTimeout(ctx, 30*time.Second)
	go func() {
		for probes.Err() == nil {
			b.client.NewEvent(probes, &pb.NewEventRequest{EventType: eventType + ".probe"})
			select {
			case <-probes.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	err = first.ackOne()
	stopProbes()
	if err != nil {
		return benchResult{Name: "consume", Errors: 1, FirstError: err.Error()}
	}
	if r := b.publishStreams(ctx, "seed", eventType, load{Total: total, Workers: 4}, nil); r.Errors > 0 {
		return benchResult{Name: "consume", Errors: r.Errors, FirstError: "seeding: " + r.FirstError}
	}
	subs := []*benchSubscriber{first}
	for len(subs) < consumeSubscribers {
		s, err := b.openSubscriber(ctx, group, eventType)
		if err != nil {
			return benchResult{Name: "consume", Errors: 1, FirstError: err.Error()}
		}
		subs = append(subs, s)
	}
	// Every subscriber acks what it gets until all events are confirmed.
	rec := &recorder{}
	stopProgress := b.load.watch(rec)
	start := time.Now()
	allDone := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Go(func() {
			lat, errs, firstErr := s.ackAll(rec, int64(total), func() { once.Do(func() { close(allDone) }) })
			rec.add(lat, errs, firstErr)
		})
	}
	stalled := stallWatch(ctx, rec, 10*time.Second)
	select {
	case <-allDone:
	case <-stalled:
		rec.add(nil, 1, fmt.Sprintf("stalled: no ack confirmed for 10s (%d of %d)", rec.done.Load(), total))
	case <-ctx.Done():
	}
	elapsed := time.Since(start)
	for _, s := range subs {
		s.cancel()
	}
	wg.Wait()
	stopProgress()
	return rec.result("consume", elapsed)
}

// benchSubscriber is one Subscribe stream that acks what it gets.
type benchSubscriber struct {
	stream pb.Controller_SubscribeClient
	cancel context.CancelFunc
}

func (b *benchTarget) openSubscriber(ctx context.Context, group, eventType string) (*benchSubscriber, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := b.client.Subscribe(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	open := &pb.SubscribeOpen{Group: group, Filters: []string{eventType, eventType + ".probe"}, MaxInFlight: 256}
	if err := stream.Send(&pb.SubscribeRequest{Request: &pb.SubscribeRequest_Open{Open: open}}); err != nil {
		cancel()
		return nil, err
	}
	return &benchSubscriber{stream: stream, cancel: cancel}, nil
}

// ackOne receives the next delivery and acks it, without waiting for the
// confirmation (used once, to see the group work).
func (s *benchSubscriber) ackOne() error {
	for {
		d, err := s.stream.Recv()
		if err != nil {
			return err
		}
		if d.GetSettled() != nil {
			continue
		}
		st := &pb.Settle{DeliveryId: d.GetDeliveryId(), Action: pb.SettleAction_SETTLE_ACTION_ACK}
		return s.stream.Send(&pb.SubscribeRequest{Request: &pb.SubscribeRequest_Settle{Settle: st}})
	}
}

// ackAll acks every delivery and counts confirmations in rec until total
// are confirmed across all subscribers, then calls done. Latency is from
// delivery to confirmation.
func (s *benchSubscriber) ackAll(rec *recorder, total int64, done func()) (lat []time.Duration, errs int, firstErr string) {
	received := map[string]time.Time{}
	for {
		d, err := s.stream.Recv()
		if err != nil {
			return lat, errs, firstErr
		}
		if r := d.GetSettled(); r != nil {
			t0, ok := received[r.GetDeliveryId()]
			delete(received, r.GetDeliveryId())
			if !ok {
				continue // a probe's, or the first ack's
			}
			if r.GetCode() != 0 {
				if errs++; firstErr == "" {
					firstErr = r.GetMessage()
				}
				continue
			}
			lat = append(lat, time.Since(t0))
			if rec.done.Add(1) >= total {
				done()
			}
			continue
		}
		if !strings.HasSuffix(d.GetEventType(), ".probe") {
			received[d.GetDeliveryId()] = time.Now()
		}
		st := &pb.Settle{DeliveryId: d.GetDeliveryId(), Action: pb.SettleAction_SETTLE_ACTION_ACK}
		if err := s.stream.Send(&pb.SubscribeRequest{Request: &pb.SubscribeRequest_Settle{Settle: st}}); err != nil {
			return lat, errs + 1, err.Error()
		}
	}
}

// stallWatch closes the returned channel when rec makes no progress for d.
func stallWatch(ctx context.Context, rec *recorder, d time.Duration) <-chan struct{} {
	stalled := make(chan struct{})
	go func() {
		last, since := rec.done.Load(), time.Now()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if n := rec.done.Load(); n != last {
				last, since = n, time.Now()
			} else if time.Since(since) > d {
				close(stalled)
				return
			}
		}
	}()
	return stalled
}
