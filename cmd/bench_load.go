package cmd

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// load drives a benchmark: Workers goroutines run operations until Total
// have been started or Duration has passed, whichever comes first (0 means
// no limit of that kind).
type load struct {
	Total    int
	Duration time.Duration
	Workers  int
	// Progress, if set, is called now and then with the operations done.
	Progress func(done int)
}

// benchResult is one measured run.
type benchResult struct {
	Name       string        `json:"name"`
	Ops        int           `json:"ops"`
	Errors     int           `json:"errors"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	Throughput float64       `json:"ops_per_sec"`
	P50        time.Duration `json:"p50_ns"`
	P90        time.Duration `json:"p90_ns"`
	P99        time.Duration `json:"p99_ns"`
	Max        time.Duration `json:"max_ns"`
	FirstError string        `json:"first_error,omitempty"`
	// Ratio is Throughput divided by the baseline's, when compared.
	Ratio float64 `json:"ratio,omitempty"`
}

// recorder collects latencies and errors from several goroutines.
type recorder struct {
	mu       sync.Mutex
	lat      []time.Duration
	errors   int
	firstErr string
	done     atomic.Int64
}

func (r *recorder) add(lat []time.Duration, errs int, firstErr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lat = append(r.lat, lat...)
	r.errors += errs
	if r.firstErr == "" {
		r.firstErr = firstErr
	}
}

func (r *recorder) result(name string, elapsed time.Duration) benchResult {
	slices.Sort(r.lat)
	res := benchResult{Name: name, Ops: len(r.lat), Errors: r.errors, Elapsed: elapsed, FirstError: r.firstErr}
	if elapsed > 0 {
		res.Throughput = float64(len(r.lat)) / elapsed.Seconds()
	}
	if n := len(r.lat); n > 0 {
		at := func(q float64) time.Duration { return r.lat[min(n-1, int(q*float64(n)))] }
		res.P50, res.P90, res.P99, res.Max = at(0.50), at(0.90), at(0.99), r.lat[n-1]
	}
	return res
}

// claimer hands out operation numbers until the total or the deadline.
type claimer struct {
	next     atomic.Int64
	total    int64
	deadline time.Time
}

func (l load) claimer(start time.Time) *claimer {
	c := &claimer{total: int64(l.Total)}
	if l.Duration > 0 {
		c.deadline = start.Add(l.Duration)
	}
	return c
}

// claim returns the next operation number, or false when the run is over.
func (c *claimer) claim() (int, bool) {
	if !c.deadline.IsZero() && time.Now().After(c.deadline) {
		return 0, false
	}
	i := c.next.Add(1) - 1
	if c.total > 0 && i >= c.total {
		return 0, false
	}
	return int(i), true
}

// run measures op, called once per operation by Workers goroutines; each
// goroutine gets its own worker state from newWorker.
func (l load) run(ctx context.Context, name string, newWorker func(w int) (op func(ctx context.Context, i int) error, closeFn func())) benchResult {
	rec := &recorder{}
	stopProgress := l.watch(rec)
	start := time.Now()
	cl := l.claimer(start)
	var wg sync.WaitGroup
	for w := range l.Workers {
		op, closeFn := newWorker(w)
		wg.Go(func() {
			if closeFn != nil {
				defer closeFn()
			}
			lat := make([]time.Duration, 0, 1024)
			errs, firstErr := 0, ""
			for ctx.Err() == nil {
				i, ok := cl.claim()
				if !ok {
					break
				}
				t0 := time.Now()
				if err := op(ctx, i); err != nil {
					if errs++; firstErr == "" {
						firstErr = err.Error()
					}
					continue
				}
				lat = append(lat, time.Since(t0))
				rec.done.Add(1)
			}
			rec.add(lat, errs, firstErr)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()
	return rec.result(name, elapsed)
}

// watch calls Progress every 100ms until stopped.
func (l load) watch(rec *recorder) (stop func()) {
	if l.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				l.Progress(int(rec.done.Load()))
				return
			case <-t.C:
				l.Progress(int(rec.done.Load()))
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// pipelined measures operations that complete asynchronously: each worker
// starts operations with send (at most window outstanding) and a completion
// for each arrives in order through wait. Latency is from send to completion.
func (l load) pipelined(ctx context.Context, name string, window int, newWorker func(w int) (send func(i int) error, wait func() error, closeFn func())) benchResult {
	rec := &recorder{}
	stopProgress := l.watch(rec)
	start := time.Now()
	cl := l.claimer(start)
	var wg sync.WaitGroup
	for w := range l.Workers {
		send, wait, closeFn := newWorker(w)
		wg.Go(func() {
			if closeFn != nil {
				defer closeFn()
			}
			sent := make(chan time.Time, window)
			var lat []time.Duration
			errs, firstErr := 0, ""
			var inner sync.WaitGroup
			inner.Go(func() { // completions, in order
				for t0 := range sent {
					if err := wait(); err != nil {
						if errs++; firstErr == "" {
							firstErr = err.Error()
						}
						continue
					}
					lat = append(lat, time.Since(t0))
					rec.done.Add(1)
				}
			})
			for ctx.Err() == nil {
				i, ok := cl.claim()
				if !ok {
					break
				}
				t0 := time.Now()
				if err := send(i); err != nil {
					break
				}
				sent <- t0
			}
			close(sent)
			inner.Wait()
			rec.add(lat, errs, firstErr)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()
	return rec.result(name, elapsed)
}
