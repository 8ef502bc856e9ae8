package cmd

import (
	"bytes"
	"context"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// fileState is what a second instance must not change.
type fileState struct {
	size    int64
	modTime time.Time
	mode    fs.FileMode
}

func snapshot(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out[p] = fileState{fi.Size(), fi.ModTime(), fi.Mode()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSecondInstanceFailsFast runs `jsctl serve` on a data dir a running app
// holds: it must fail within 2 s, name the data dir, and change no file.
func TestSecondInstanceFailsFast(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	a := startApp(t, testConfig(t, dir))
	c, _ := dialApp(t, a)
	publish(t, c, &pb.NewEventRequest{EventType: "order.created"})
	waitFor(t, 5*time.Second, func() bool { return a.ledger.PendingMarks() == 0 })
	before := snapshot(t, dir)

	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := Main(context.Background(), []string{"serve", "--data-dir", dir, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--log-format", "text"}, &stdout, &stderr)
	took := time.Since(start)

	if code == 0 {
		t.Fatal("second serve exited 0")
	}
	if took > 2*time.Second {
		t.Fatalf("second serve took %s to fail, want under 2s", took)
	}
	abs, _ := filepath.Abs(dir)
	if msg := stderr.String(); !strings.Contains(msg, abs) || !strings.Contains(msg, "another jsctl") {
		t.Fatalf("message %q does not name the data dir %s and the other jsctl", msg, abs)
	}
	after := snapshot(t, dir)
	for p, st := range before {
		if after[p] != st {
			t.Errorf("%s changed: %+v -> %+v", p, st, after[p])
		}
	}
	if len(after) != len(before) {
		t.Errorf("files: %d before, %d after", len(before), len(after))
	}
	// The first instance still serves.
	publish(t, c, &pb.NewEventRequest{EventType: "order.created"})
}
