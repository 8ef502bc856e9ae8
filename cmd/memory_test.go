package cmd

import (
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
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
	if got, want := debug.SetMemoryLimit(-1), effectiveMemoryLimit(512<<20, memlimit.ApplyFallback(memlimit.FromCgroup, memlimit.FromSystem)); got > 512<<20 || got == 0 || got > want {
		t.Errorf("memory limit %d, want at most the default 512 MiB and the box's memory (%d)", got, want)
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

func TestEffectiveMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name       string
		configured int64
		available  memlimit.Provider
		want       int64
	}{
		{"SmallContainer", 512 << 20, memlimit.ApplyRatio(memlimit.Limit(256<<20), 0.8), 204 << 20},
		{"BigBox", 512 << 20, memlimit.ApplyRatio(memlimit.Limit(24<<30), 0.8), 512 << 20},
		{"Unknown", 512 << 20, func() (uint64, error) { return 0, memlimit.ErrNoLimit }, 512 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := effectiveMemoryLimit(tc.configured, tc.available); got/(1<<20) != tc.want/(1<<20) {
				t.Errorf("limit %d MiB, want %d MiB", got>>20, tc.want>>20)
			}
		})
	}
}
