package boltstore

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jsctl/jsctl/event"
)

// mappedKB returns how much of path this process has resident through its
// memory maps, from /proc/self/smaps.
func mappedKB(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	total, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			in = len(fields) >= 6 && fields[5] == path
		case in && len(fields) >= 2 && fields[0] == "Rss:":
			kb, _ := strconv.Atoi(fields[1])
			total += kb
		}
	}
	return total
}

func TestReleaseMappedPages(t *testing.T) {
	s := openInternal(t)
	payload := func(i int) []byte { return bytes.Repeat(fmt.Append(nil, i), 200) }
	evs := make([]*event.Event, 4000)
	for i := range evs {
		evs[i] = internalEvent(t, payload(i), "")
	}
	for _, r := range s.AppendBatch(evs, 0) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	// Read every event through the mapping, with its payload.
	read := func() {
		for i, e := range evs {
			got, err := s.Get(e.ID, true)
			if err != nil {
				t.Fatalf("Get %d: %v", i, err)
			}
			if !bytes.Equal(got.Payload, payload(i)) {
				t.Fatalf("event %d: payload of %d bytes", i, len(got.Payload))
			}
		}
	}
	read()
	before := mappedKB(t, s.Path)
	if before < 2048 {
		t.Fatalf("only %d kB of the ledger mapped after reading 4,000 events of ~1 kB", before)
	}
	s.releaseMappedPages()
	after := mappedKB(t, s.Path)
	t.Logf("ledger resident through the map: %d kB before, %d kB after the release", before, after)
	if after > before/4 {
		t.Fatalf("%d kB still resident after the release, %d kB before", after, before)
	}
	// Everything reads back the same, and writes go on.
	read()
	appendConcurrently(t, s, 10)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}
