package cmd

import (
	"runtime/debug"
	"testing"
)

var sink [][]byte

func TestReturnHeldMemory(t *testing.T) {
	// A burst: 128 MiB allocated and dropped, not yet collected.
	for range 128 {
		sink = append(sink, make([]byte, 1<<20))
	}
	sink = nil
	held := heapHeld()
	if held < 128<<20 {
		t.Fatalf("heap holds only %d bytes after a 128 MiB burst", held)
	}
	if !returnHeldMemory(64 << 20) {
		t.Fatal("returnHeldMemory did nothing with", held, "bytes held")
	}
	if after := heapHeld(); after > held/4 {
		t.Fatalf("heap still holds %d bytes after returning, %d before", after, held)
	}
	if returnHeldMemory(64 << 20) {
		t.Fatal("returnHeldMemory collected again below the threshold")
	}
}

func TestTuneRuntime(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	cfg := DefaultConfig()

	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	tuneRuntime(cfg, testLogger())
	if got := debug.SetGCPercent(100); got != 300 {
		t.Errorf("GC percent %d, want the default 300", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 512<<20 {
		t.Errorf("memory limit %d, want the default 512 MiB", got)
	}

	// The operator's environment wins.
	t.Setenv("GOGC", "150")
	t.Setenv("GOMEMLIMIT", "1GiB")
	debug.SetGCPercent(150)
	debug.SetMemoryLimit(1 << 30)
	cfg.GCPercent, cfg.MemoryLimitBytes = 500, 128<<20
	tuneRuntime(cfg, testLogger())
	if got := debug.SetGCPercent(100); got != 150 {
		t.Errorf("GC percent %d with GOGC=150 set, want 150", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Errorf("memory limit %d with GOMEMLIMIT=1GiB set, want 1 GiB", got)
	}
}
