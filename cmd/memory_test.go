package cmd

import "testing"

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
