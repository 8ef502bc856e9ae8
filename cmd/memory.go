package cmd

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// Returning memory to the OS after bursts.
//
// A burst of events leaves the Go heap large for a while: JetStream keeps
// every message ID of its duplicate window, and the garbage of a burst waits
// for the next collection (up to 2 minutes on an idle server), then the
// runtime's scavenger returns the pages slowly. On an edge box the memory is
// better back with the OS. Once a minute, if the heap holds more than
// heldMemoryThreshold (live objects, garbage and free pages not yet
// returned), jsctl collects and returns what is free at once: one extra
// collection a minute under load, a prompt shrink after a burst.
const (
	heldMemoryInterval  = time.Minute
	heldMemoryThreshold = 64 << 20
)

// heapHeld reports the heap bytes the runtime holds from the OS: objects
// (live or not yet collected), free and unused heap memory.
func heapHeld() uint64 {
	s := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
	}
	metrics.Read(s)
	var n uint64
	for _, v := range s {
		if v.Value.Kind() == metrics.KindUint64 {
			n += v.Value.Uint64()
		}
	}
	return n
}

// returnHeldMemory collects and returns free heap memory to the OS when the
// heap holds more than threshold, and reports whether it did.
func returnHeldMemory(threshold uint64) bool {
	if heapHeld() <= threshold {
		return false
	}
	debug.FreeOSMemory()
	return true
}

// returnMemoryLoop runs returnHeldMemory every heldMemoryInterval until ctx
// is done.
func (a *App) returnMemoryLoop(ctx context.Context) {
	defer a.bg.Done()
	t := time.NewTicker(heldMemoryInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			returnHeldMemory(heldMemoryThreshold)
		}
	}
}

// tuneRuntime applies gc_percent and the memory limit, unless the GOGC or
// GOMEMLIMIT environment variables are set: those are the operator's and
// win. The limit is memory_limit_bytes, or 80% of the memory the box or the
// container's cgroup has, whichever is lower: a 300% GC target must not run
// a small container out of memory.
func tuneRuntime(cfg Config, log *slog.Logger) {
	gc, limit := "GOGC="+os.Getenv("GOGC"), "GOMEMLIMIT="+os.Getenv("GOMEMLIMIT")
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(cfg.GCPercent)
		gc = strconv.Itoa(cfg.GCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" && cfg.MemoryLimitBytes > 0 {
		n := effectiveMemoryLimit(cfg.MemoryLimitBytes, memlimit.ApplyRatio(memlimit.ApplyFallback(memlimit.FromCgroup, memlimit.FromSystem), 0.8))
		debug.SetMemoryLimit(n)
		limit = strconv.FormatInt(n, 10)
	}
	log.Debug("go runtime", "gc_percent", gc, "memory_limit_bytes", limit)
}

// effectiveMemoryLimit is configured, or what available reports if that is
// lower (and known).
func effectiveMemoryLimit(configured int64, available memlimit.Provider) int64 {
	if n, err := available(); err == nil && n > 0 && n < uint64(configured) {
		return int64(n)
	}
	return configured
}
