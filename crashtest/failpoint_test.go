package crashtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// TestFailpoints kills jsctl exactly between the pipeline's steps (a build
// with -tags failpoints; see event/failpoint_on.go) under load, restarts it
// and checks: every acknowledged event is present once, and nothing is left
// ACCEPTED (the event caught between steps was found in the stream or
// published again); every ack a subscriber saw confirmed, and every ack
// JetStream holds, is PROCESSED in the ledger (acks caught between the
// ledger and JetStream are delivered again and settled by jsctl).
func TestFailpoints(t *testing.T) {
	plain, withFailpoints := build(t)
	for _, point := range []string{"after-ledger-commit", "after-puback", "after-mark", "after-ack-record"} {
		t.Run(point, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			addr, natsAddr := freeAddr(t), freeAddr(t)
			cfg := writeConfig(t, natsAddr)
			cc, client := dial(t, addr)
			rec := newRecord()
			for run := range *failpointRuns {
				spec := fmt.Sprintf("JSCTL_FAILPOINT=%s:%d", point, 1+rand.IntN(200))
				srv := start(t, withFailpoints, dir, addr, "JSCTL_CONFIG="+cfg, spec)
				srv.waitServing(cc)
				ctx, stop := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				for range 8 {
					wg.Go(func() { produce(ctx, client, rec) })
				}
				for range 2 {
					wg.Go(func() { consume(ctx, client, rec) })
				}
				select {
				case <-srv.exited:
				case <-time.After(30 * time.Second):
					t.Fatalf("run %d: %s never reached", run, spec)
				}
				stop()
				wg.Wait()
				checkLedger(t, dir)

				srv = start(t, plain, dir, addr, "JSCTL_CONFIG="+cfg)
				srv.waitServing(cc)
				verify(t, client, rec, true)
				assertAcksRecorded(t, natsAddr, client, rec)
				assertNoneAccepted(t, client)
				scanStream(t, natsAddr, rec)
				srv.kill()
			}
			t.Logf("%s: %d runs, %d events acknowledged, 0 lost, 0 duplicated", point, *failpointRuns, len(rec.acked))
		})
	}
}

// assertNoneAccepted fails if any event in the ledger is still ACCEPTED.
func assertNoneAccepted(t *testing.T, client pb.ControllerClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.ListEvents(ctx, &pb.ListEventsRequest{Status: pb.Status_STATUS_ACCEPTED})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetEvents()); n > 0 {
		t.Fatalf("%d events still ACCEPTED after restart, first %s", n, resp.GetEvents()[0].GetCorrelationId())
	}
}
