package cmd

import (
	"context"
	"encoding/json"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// TestBenchCommand runs every scenario and baseline with a few operations:
// the command must work end to end (the numbers are not judged here).
func TestBenchCommand(t *testing.T) {
	code, out, errOut := runCLI(t, "", "bench", "all", "-n", "300", "-c", "4", "-s", "64", "--baselines", "-o", "json")
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, errOut)
	}
	var report benchReport
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("bench -o json: %v\n%s", err, out)
	}
	names := map[string]benchResult{}
	for _, r := range report.Results {
		names[r.Name] = r
		if r.Errors > 0 || r.Ops == 0 || r.Throughput <= 0 || r.P50 <= 0 || r.Max < r.P99 {
			t.Errorf("%s: %+v", r.Name, r)
		}
	}
	for _, want := range []string{"publish", "stream", "status", "consume", baseGRPC, baseSyncAlways, baseSync, baseAsync, baseConsume} {
		if _, ok := names[want]; !ok {
			t.Errorf("no result for %s", want)
		}
	}
	if len(report.Ratios) < 5 {
		t.Errorf("ratios %+v", report.Ratios)
	}

	t.Run("Text", func(t *testing.T) {
		code, out, errOut := runCLI(t, "", "bench", "publish", "-n", "100", "-c", "2")
		if code != 0 || !strings.Contains(out, "publish") || !strings.Contains(out, "ops/s") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("ErrScenario", func(t *testing.T) {
		if code, _, errOut := runCLI(t, "", "bench", "nope"); code != 1 || !strings.Contains(errOut, "unknown scenario") {
			t.Fatalf("exit %d %q", code, errOut)
		}
	})
}

// BenchmarkNewEvent is NewEvent end to end: real gRPC over loopback, 64
// concurrent callers on one connection, a durable in-process jsctl.
func BenchmarkNewEvent(b *testing.B) {
	c := benchApp(b)
	req := &pb.NewEventRequest{EventType: "bench.newevent", Payload: make([]byte, 256)}
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(p *testing.PB) {
		for p.Next() {
			if _, err := c.NewEvent(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkEventStatus is EventStatus end to end on existing events.
func BenchmarkEventStatus(b *testing.B) {
	c := benchApp(b)
	var ids []string
	for range 100 {
		resp, err := c.NewEvent(context.Background(), &pb.NewEventRequest{EventType: "bench.status", Payload: make([]byte, 256)})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, resp.GetEvent().GetCorrelationId())
	}
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(p *testing.PB) {
		i := 0
		for p.Next() {
			if _, err := c.EventStatus(context.Background(), &pb.EventStatusRequest{CorrelationId: ids[i%len(ids)]}); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkConsume is Subscribe end to end: b.N events published first (not
// timed), then one group's 4 subscribers (256 in flight each) receive and
// ack them, each ack confirmed. Allocations count client and server.
func BenchmarkConsume(b *testing.B) {
	// The filters openSubscriber opens with.
	c := benchApp(b, GroupConfig{Name: "bench", Filters: []string{"bench.consume", "bench.consume.probe"}})
	payload := make([]byte, 256)
	target := &benchTarget{client: c, payload: payload}
	if r := target.publishStreams(context.Background(), "seed", "bench.consume", load{Total: b.N, Workers: 4}, nil); r.Errors > 0 {
		b.Fatalf("seed: %s", r.FirstError)
	}
	var subs []*benchSubscriber
	for range consumeSubscribers {
		s, err := target.openSubscriber(context.Background(), "bench", "bench.consume")
		if err != nil {
			b.Fatal(err)
		}
		subs = append(subs, s)
	}
	rec := &recorder{}
	allDone := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	b.ResetTimer()
	for _, s := range subs {
		wg.Go(func() {
			_, errs, firstErr := s.ackAll(rec, int64(b.N), func() { once.Do(func() { close(allDone) }) })
			if errs > 0 {
				b.Errorf("%d acks failed, first: %s", errs, firstErr)
			}
		})
	}
	select {
	case <-allDone:
	case <-time.After(time.Minute):
		b.Errorf("%d of %d acks confirmed after a minute", rec.done.Load(), b.N)
	}
	b.StopTimer()
	for _, s := range subs {
		s.cancel()
	}
	wg.Wait()
}

// benchApp starts a durable in-process jsctl with the groups and returns a
// client of it.
func benchApp(b *testing.B, groups ...GroupConfig) pb.ControllerClient {
	b.Helper()
	cfg := DefaultConfig()
	cfg.Groups = groups
	cfg.DataDir = b.TempDir()
	cfg.GRPC.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = ""
	a := NewApp(cfg, testLogger())
	if err := a.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	c, _ := dialApp(b, a)
	return c
}

// TestBenchHistory runs the history scenario small: both NewEvent runs, the
// load, the restart and the ledger's figures must be there.
func TestBenchHistory(t *testing.T) {
	code, out, errOut := runCLI(t, "", "bench", "history", "--history", "500", "--history-settle", "0s", "-n", "200", "-c", "4", "-o", "json")
	if code != 0 {
		t.Fatalf("bench history: exit %d: %s", code, errOut)
	}
	var report benchReport
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("bench history -o json: %v\n%s", err, out)
	}
	var names []string
	for _, r := range report.Results {
		names = append(names, r.Name)
		if r.Errors > 0 || r.Ops == 0 {
			t.Errorf("%s: %+v", r.Name, r)
		}
	}
	if want := []string{"publish (empty ledger)", "load history", "publish (500 events)"}; !slices.Equal(names, want) {
		t.Errorf("runs %q, want %q", names, want)
	}
	h := report.History
	// 200 + 500 + 200 events, each run's: all in the ledger after the restart.
	if h == nil || h.Events != 900 || h.ColdStart <= 0 || h.BytesPerEvent <= 0 {
		t.Fatalf("history %+v, want 900 events, a cold start and bytes per event", h)
	}
	if len(report.Ratios) != 1 || report.Ratios[0].Target != historyTarget {
		t.Errorf("ratios %+v", report.Ratios)
	}
	t.Run("ErrAddr", func(t *testing.T) {
		if code, _, errOut := runCLI(t, "", "bench", "history", "--addr", "127.0.0.1:1"); code != 1 || !strings.Contains(errOut, "in-process") {
			t.Fatalf("exit %d %q", code, errOut)
		}
	})
}
