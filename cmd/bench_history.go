package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"google.golang.org/grpc"

	"github.com/jsctl/jsctl/boltstore"
	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// benchHistory is what the history scenario measured besides its runs.
type benchHistory struct {
	Events        int           `json:"events"`                 // in the ledger after loading
	ColdStart     time.Duration `json:"cold_start_ns"`          // restart to SERVING with them
	BytesPerEvent int64         `json:"ledger_bytes_per_event"` // pages in use / events
}

// historyTarget is the least NewEvent throughput with the history loaded,
// as a fraction of an empty ledger's (issue #5).
const historyTarget = 0.9

// newBenchTarget returns the scenarios' client on cc.
func newBenchTarget(cc *grpc.ClientConn, payload []byte) *benchTarget {
	return &benchTarget{cc: cc, client: pb.NewControllerClient(cc), payload: payload, runID: strconv.FormatInt(time.Now().UnixNano(), 36)}
}

// runHistory measures what a long history costs. NewEvent runs on an empty
// ledger; o.history events are loaded with PublishEvents; after o.settle
// (by default JetStream's duplicate window, whose message IDs it keeps in
// memory and rebuilds at start, so that the server is in its steady state)
// jsctl restarts, timed to SERVING; NewEvent runs again; the ledger is
// inspected for its bytes per event.
func (o *benchOptions) runHistory(ctx context.Context, progressOut io.Writer) (*benchReport, error) {
	if o.addr != "" {
		return nil, errors.New("bench history restarts jsctl, so it runs only in-process: drop --addr")
	}
	if o.history < 1 {
		return nil, fmt.Errorf("--history %d: want at least 1 event", o.history)
	}
	l, report, payload := o.setup()
	srv, err := startBenchServer(ctx)
	if err != nil {
		return nil, err
	}
	defer srv.stop()

	measure := func(name string) (benchResult, error) {
		cc, err := (&connOptions{}).dial(srv.addr())
		if err != nil {
			return benchResult{}, err
		}
		defer cc.Close()
		t := newBenchTarget(cc, payload)
		t.load = l
		t.load.Progress = o.progress(progressOut, name)
		r := t.publish(ctx)
		r.Name = name
		return r, nil
	}
	empty, err := measure("publish (empty ledger)")
	if err != nil {
		return nil, err
	}

	cc, err := (&connOptions{}).dial(srv.addr())
	if err != nil {
		return nil, err
	}
	loader := newBenchTarget(cc, payload)
	preload := loader.publishStreams(ctx, "load history", "bench.history."+loader.runID,
		load{Total: o.history, Workers: 16, Progress: progressBar(progressOut, "load history", o.history)}, nil)
	cc.Close()
	if preload.Errors > 0 {
		return nil, fmt.Errorf("loading the history: %d errors, first: %s", preload.Errors, preload.FirstError)
	}
	if o.settle > 0 {
		fmt.Fprintf(progressOut, "waiting %s for JetStream's duplicate window to pass\n", o.settle)
		select {
		case <-time.After(o.settle):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	coldStart, err := srv.restart(ctx)
	if err != nil {
		return nil, fmt.Errorf("restart with the history: %w", err)
	}
	full, err := measure(fmt.Sprintf("publish (%d events)", o.history))
	if err != nil {
		return nil, err
	}

	srv.app.Close() // Inspect reads the file offline
	in, err := boltstore.Inspect(srv.cfg.LedgerPath())
	if err != nil {
		return nil, fmt.Errorf("inspect the ledger: %w", err)
	}
	report.Results = []benchResult{empty, preload, full}
	if empty.Throughput > 0 {
		ratio := full.Throughput / empty.Throughput
		report.Ratios = []benchRatio{{Scenario: full.Name, Baseline: empty.Name, Ratio: ratio, Target: historyTarget, Met: ratio >= historyTarget}}
	}
	report.History = &benchHistory{Events: in.Events, ColdStart: coldStart, BytesPerEvent: in.Bytes / int64(max(in.Events, 1))}
	return report, nil
}
