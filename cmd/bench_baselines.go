package cmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/jsctl/jsctl/embedded"
	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// Baselines: what the same machine does with no jsctl in the way, measured
// in the same run with the same payload and concurrency.
const (
	baseGRPC       = "(a) grpc-noop"
	baseSyncAlways = "(b) js-sync-always"
	baseSync       = "(c) js-sync"
	baseAsync      = "(d) js-async"
	baseConsume    = "(e) js-pull-fetch-ack"
)

// noopController answers NewEvent at once: the ceiling of a unary API.
type noopController struct {
	pb.UnimplementedControllerServer
	resp *pb.NewEventResponse
}

func (n *noopController) NewEvent(context.Context, *pb.NewEventRequest) (*pb.NewEventResponse, error) {
	return n.resp, nil
}

// baselineGRPC measures a bare gRPC unary server over loopback.
func baselineGRPC(ctx context.Context, payload []byte, l load) (benchResult, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return benchResult{}, err
	}
	srv := grpc.NewServer()
	pb.RegisterControllerServer(srv, &noopController{resp: &pb.NewEventResponse{Ack: true, Event: &pb.Event{
		CorrelationId: "01900000-0000-7000-8000-000000000000", EventType: "bench", StreamSequence: 1, Status: pb.Status_STATUS_PUBLISHED,
	}}})
	go srv.Serve(lis)
	defer srv.Stop()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return benchResult{}, err
	}
	defer cc.Close()
	client := pb.NewControllerClient(cc)
	req := &pb.NewEventRequest{EventType: "bench", Payload: payload}
	return l.run(ctx, baseGRPC, func(int) (func(context.Context, int) error, func()) {
		return func(ctx context.Context, _ int) error {
			_, err := client.NewEvent(ctx, req)
			return err
		}, nil
	}), nil
}

// benchJetStream is a throwaway embedded JetStream server with one stream.
type benchJetStream struct {
	srv *embedded.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	dir string
}

func openBenchJetStream(ctx context.Context, syncAlways bool) (*benchJetStream, error) {
	dir, err := os.MkdirTemp("", "jsctl-bench-js-")
	if err != nil {
		return nil, err
	}
	b := &benchJetStream{dir: dir, srv: embedded.New(filepath.Join(dir, "jetstream"))}
	b.srv.SyncAlways = syncAlways
	b.srv.Logger = slog.New(slog.DiscardHandler)
	if err := b.srv.Open(); err != nil {
		b.close()
		return nil, err
	}
	if b.nc, err = b.srv.Connect("bench"); err != nil {
		b.close()
		return nil, err
	}
	if b.js, err = jetstream.New(b.nc, jetstream.WithPublishAsyncMaxPending(16384)); err != nil {
		b.close()
		return nil, err
	}
	_, err = b.js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench.>"}, Storage: jetstream.FileStorage})
	if err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

func (b *benchJetStream) close() {
	if b.nc != nil {
		b.nc.Close()
	}
	b.srv.Close()
	os.RemoveAll(b.dir)
}

// baselineSyncPublish measures raw synchronous JetStream publishes.
func baselineSyncPublish(ctx context.Context, name string, syncAlways bool, payload []byte, l load) (benchResult, error) {
	b, err := openBenchJetStream(ctx, syncAlways)
	if err != nil {
		return benchResult{}, err
	}
	defer b.close()
	return b.syncPublish(ctx, name, payload, l), nil
}

// syncPublish publishes with js.Publish, each call waiting for its PubAck.
func (b *benchJetStream) syncPublish(ctx context.Context, name string, payload []byte, l load) benchResult {
	return l.run(ctx, name, func(int) (func(context.Context, int) error, func()) {
		return func(ctx context.Context, _ int) error {
			_, err := b.js.Publish(ctx, "bench.sync", payload)
			return err
		}, nil
	})
}

// baselineAsyncPublish measures raw PublishAsync, streamWindow in flight per
// worker, as the stream scenario keeps.
func baselineAsyncPublish(ctx context.Context, payload []byte, l load) (benchResult, error) {
	b, err := openBenchJetStream(ctx, false)
	if err != nil {
		return benchResult{}, err
	}
	defer b.close()
	return l.pipelined(ctx, baseAsync, streamWindow, func(int) (func(int) error, func() error, func()) {
		var mu sync.Mutex
		var futures []jetstream.PubAckFuture
		send := func(int) error {
			f, err := b.js.PublishAsync("bench.async", payload)
			if err != nil {
				return err
			}
			mu.Lock()
			futures = append(futures, f)
			mu.Unlock()
			return nil
		}
		wait := func() error {
			mu.Lock()
			f := futures[0]
			futures = futures[1:]
			mu.Unlock()
			select {
			case <-f.Ok():
				return nil
			case err := <-f.Err():
				return err
			case <-time.After(30 * time.Second):
				return errors.New("no ack in 30s")
			}
		}
		return send, wait, nil
	}), nil
}

// baselineConsume measures a raw durable pull consumer: consumeSubscribers
// workers fetch batches and ack each message (confirmed, like jsctl's acks).
func baselineConsume(ctx context.Context, payload []byte, total int) (benchResult, error) {
	b, err := openBenchJetStream(ctx, false)
	if err != nil {
		return benchResult{}, err
	}
	defer b.close()
	seed := load{Total: total, Workers: 4}
	if r := b.syncPublish(ctx, "seed", payload, seed); r.Errors > 0 {
		return benchResult{}, fmt.Errorf("seed: %s", r.FirstError)
	}
	c, err := b.js.CreateConsumer(ctx, "BENCH", jetstream.ConsumerConfig{Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4096})
	if err != nil {
		return benchResult{}, err
	}
	rec := &recorder{}
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-stallWatch(ctx, rec, 10*time.Second):
			rec.add(nil, 1, fmt.Sprintf("stalled: no ack for 10s (%d of %d)", rec.done.Load(), total))
			cancel()
		case <-ctx.Done():
		}
	}()
	var wg sync.WaitGroup
	for range consumeSubscribers {
		wg.Go(func() {
			var lat []time.Duration
			errs, firstErr := 0, ""
			for rec.done.Load() < int64(total) && ctx.Err() == nil {
				mb, err := c.Fetch(256, jetstream.FetchMaxWait(200*time.Millisecond))
				if err != nil {
					errs, firstErr = errs+1, err.Error()
					break
				}
				for m := range mb.Messages() {
					t0 := time.Now()
					if err := m.DoubleAck(ctx); err != nil {
						if errs++; firstErr == "" {
							firstErr = err.Error()
						}
						continue
					}
					lat = append(lat, time.Since(t0))
					rec.done.Add(1)
				}
			}
			rec.add(lat, errs, firstErr)
		})
	}
	wg.Wait()
	return rec.result(baseConsume, time.Since(start)), nil
}
