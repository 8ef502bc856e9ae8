package crashtest

import (
	"context"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// TestGracefulStopUnderLoad: SIGTERM under load. Health goes NOT_SERVING
// first, calls in flight finish or fail with UNAVAILABLE, the process exits 0
// within 10s, and nothing acknowledged is lost.
func TestGracefulStopUnderLoad(t *testing.T) {
	plain, _ := build(t)
	dir := filepath.Join(t.TempDir(), "data")
	addr, natsAddr := freeAddr(t), freeAddr(t)
	cfg := writeConfig(t, natsAddr)
	cc, client := dial(t, addr)
	srv := start(t, plain, dir, addr, "JSCTL_CONFIG="+cfg)
	srv.waitServing(cc)

	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	watch, err := healthpb.NewHealthClient(cc).Watch(watchCtx, &healthpb.HealthCheckRequest{Service: "controller.v1.Controller"})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := watch.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health watch: %v %v", first, err)
	}
	sawNotServing := make(chan bool, 1)
	go func() {
		for {
			m, err := watch.Recv()
			if err != nil {
				sawNotServing <- false
				return
			}
			if m.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
				sawNotServing <- true
				return
			}
		}
	}()

	rec := newRecord()
	var mu sync.Mutex
	badCodes := map[codes.Code]int{}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for ctx.Err() == nil {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				resp, err := client.NewEvent(cctx, &pb.NewEventRequest{EventType: "stop.test", Payload: []byte("p")})
				cancel()
				switch code := status.Code(err); {
				case err == nil:
					rec.ack(resp.GetEvent().GetCorrelationId(), resp.GetEvent().GetStreamSequence())
				case code == codes.Unavailable || ctx.Err() != nil:
				default:
					mu.Lock()
					badCodes[code]++
					mu.Unlock()
				}
			}
		})
	}
	waitAcks(t, rec, 200)
	sigterm := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("jsctl did not exit within 10s of SIGTERM")
	}
	took := time.Since(sigterm)
	stop()
	wg.Wait()
	if code := srv.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0\n%s", code, srv.stderr)
	}
	if !<-sawNotServing {
		t.Fatal("health never reported NOT_SERVING before the server went away")
	}
	if len(badCodes) > 0 {
		t.Fatalf("calls during the stop failed with %v; want success or UNAVAILABLE", badCodes)
	}
	checkLedger(t, dir)

	srv = start(t, plain, dir, addr, "JSCTL_CONFIG="+cfg)
	srv.waitServing(cc)
	verify(t, client, rec, true)
	assertNoneAccepted(t, client)
	scanStream(t, natsAddr, rec)
	t.Logf("stopped in %s under load; %d acknowledged events all present", took.Round(time.Millisecond), len(rec.acked))
}

// waitAcks polls until the record holds n acknowledged events.
func waitAcks(t *testing.T, rec *record, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec.mu.Lock()
		got := len(rec.acked)
		rec.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d acks after 30s", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
