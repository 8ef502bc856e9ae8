package crashtest

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// TestPowerLoss runs jsctl on a file system that loses everything not
// fsynced when the power is cut (see powerFS), under load, and checks that
// no acknowledged event is lost: the ledger's fsynced commits survive, and
// what JetStream had not synced is published again from the ledger. The
// control run turns the ledger's fsync off and must lose events, which shows
// the harness can see a loss.
func TestPowerLoss(t *testing.T) {
	plain, _ := build(t)
	t.Run("Durable", func(t *testing.T) {
		pfs := mountPowerFS(t)
		lost, acked, rolledBack := powerRun(t, plain, pfs, false)
		if lost > 0 {
			t.Fatalf("%d of %d acknowledged events lost after power cuts", lost, acked)
		}
		t.Logf("%d power cuts: %d events acknowledged, 0 lost; %d unsynced bytes rolled back", *powerCycles, acked, rolledBack)
	})
	t.Run("ControlWithoutLedgerFsync", func(t *testing.T) {
		pfs := mountPowerFS(t)
		lost, acked, _ := powerRun(t, plain, pfs, true)
		if lost == 0 {
			t.Fatalf("with the ledger's fsync off, no event of %d was lost: the harness would not see a loss", acked)
		}
		t.Logf("control: without the ledger's fsync, %d of %d acknowledged events were lost", lost, acked)
	})
}

// powerRun drives load, cuts the power, restarts, and counts acknowledged
// events that are gone. A start refused for a damaged ledger counts all of
// them as lost.
func powerRun(t *testing.T, bin string, pfs *powerFS, noFsync bool) (lost, acked, rolledBack int) {
	t.Helper()
	dir := filepath.Join(pfs.mount, "data")
	addr, natsAddr := freeAddr(t), freeAddr(t)
	cfg := writeConfig(t, natsAddr)
	cc, client := dial(t, addr)
	env := []string{"JSCTL_CONFIG=" + cfg}
	if noFsync {
		env = append(env, "JSCTL_UNSAFE_LEDGER_NO_FSYNC=1")
	}
	rec := newRecord()
	for cycle := 0; cycle <= *powerCycles; cycle++ {
		srv := start(t, bin, dir, addr, env...)
		if noFsync && !srv.servesWithin(cc, 20*time.Second) {
			return len(rec.acked), len(rec.acked), rolledBack // refused to start: the ledger is damaged
		}
		srv.waitServing(cc)
		if n, moved := survey(client, rec); n > 0 || cycle == *powerCycles {
			if !noFsync {
				verifyEvents(t, client, rec, true, false)
				assertNoneAccepted(t, client)
				scanStream(t, natsAddr, rec)
				t.Logf("%d acknowledged events are at a new stream sequence: JetStream lost them unsynced and the ledger published them again", moved)
			}
			srv.kill()
			return n, len(rec.acked), rolledBack
		}
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() { produce(ctx, client, rec) })
		}
		waitAcks(t, rec, len(rec.acked)+500)
		srv.kill()
		stop()
		wg.Wait()
		rolledBack += pfs.CutPower(t)
	}
	return 0, len(rec.acked), rolledBack
}

// survey asks for every acknowledged event: how many are gone, and how many
// are at another sequence than their ack said (published again).
func survey(client pb.ControllerClient, rec *record) (lost, moved int) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, id := range rec.order {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := client.EventStatus(ctx, &pb.EventStatusRequest{CorrelationId: id})
		cancel()
		switch {
		case err != nil:
			lost++
		case st.GetEvent().GetStreamSequence() != rec.acked[id]:
			moved++
		}
	}
	return lost, moved
}
