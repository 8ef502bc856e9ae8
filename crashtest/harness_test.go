package crashtest

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

var (
	cycles        = flag.Int("cycles", 10, "kill/restart cycles of TestKillLoop (the long run uses 200)")
	failpointRuns = flag.Int("failpoint-runs", 3, "runs per failpoint of TestFailpoints (the long run uses 50)")
	powerCycles   = flag.Int("power-cycles", 4, "power cuts of TestPowerLoss (the long run uses 30)")
)

// binaries holds the jsctl builds, made once per test binary.
var binaries struct {
	once      sync.Once
	dir       string
	plain     string
	failpoint string
	err       error
}

// The builds are stamped the way the Dockerfile stamps a release, and
// TestVersionStamp checks that jsctl version prints the stamp.
const (
	stampVersion = "v0.0.0-crashtest"
	stampCommit  = "0123456789abcdef0123456789abcdef01234567"
	stampDate    = "2026-12-04T00:00:00Z"
	stampFlags   = "-X github.com/jsctl/jsctl/cmd.Version=" + stampVersion +
		" -X github.com/jsctl/jsctl/cmd.Commit=" + stampCommit +
		" -X github.com/jsctl/jsctl/cmd.BuildDate=" + stampDate
)

func build(t *testing.T) (plain, failpoints string) {
	t.Helper()
	binaries.once.Do(func() {
		binaries.dir, binaries.err = os.MkdirTemp("", "jsctl-crash-bin-")
		if binaries.err != nil {
			return
		}
		binaries.plain = filepath.Join(binaries.dir, "jsctl")
		binaries.failpoint = filepath.Join(binaries.dir, "jsctl-failpoints")
		for _, b := range []struct{ out, tags string }{{binaries.plain, ""}, {binaries.failpoint, "failpoints"}} {
			cmd := exec.Command("go", "build", "-tags", b.tags, "-o", b.out, "-ldflags", stampFlags, "..")
			if out, err := cmd.CombinedOutput(); err != nil {
				binaries.err = fmt.Errorf("go build: %v\n%s", err, out)
				return
			}
		}
	})
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return binaries.plain, binaries.failpoint
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
	}
	os.Exit(code)
}

// server is one `jsctl serve` process.
type server struct {
	t       *testing.T
	cmd     *exec.Cmd
	addr    string
	exited  chan struct{}
	stderr  *tailBuffer
	started time.Time
}

// tailBuffer keeps the last lines a process wrote, for failure messages.
type tailBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *tailBuffer) consume(r io.Reader) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		b.mu.Lock()
		b.lines = append(b.lines, s.Text())
		if len(b.lines) > 30 {
			b.lines = b.lines[len(b.lines)-30:]
		}
		b.mu.Unlock()
	}
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs `jsctl serve` on dir; env adds variables (failpoints).
func start(t *testing.T, bin, dir, addr string, env ...string) *server {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--data-dir", dir, "--grpc-listen", addr, "--http-listen", "", "--log-format", "json", "--log-level", "warn")
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, addr: addr, exited: make(chan struct{}), stderr: &tailBuffer{}, started: time.Now()}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go s.stderr.consume(stderr)
	go func() {
		cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(s.kill)
	return s
}

// waitServing polls grpc health until SERVING and returns how long the start
// took.
func (s *server) waitServing(cc *grpc.ClientConn) time.Duration {
	s.t.Helper()
	health := healthpb.NewHealthClient(cc)
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-s.exited:
			s.t.Fatalf("jsctl exited during start: %v\n%s", s.cmd.ProcessState, s.stderr)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "controller.v1.Controller"})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return time.Since(s.started)
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("jsctl not SERVING after 20s: %v\n%s", err, s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// servesWithin reports whether the server reaches SERVING within d, or
// exits first.
func (s *server) servesWithin(cc *grpc.ClientConn, d time.Duration) bool {
	health := healthpb.NewHealthClient(cc)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return false
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "controller.v1.Controller"})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// kill sends SIGKILL and waits for the process to be gone.
func (s *server) kill() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.t.Errorf("jsctl did not die after SIGKILL")
	}
}

// dial connects a client that survives the server's restarts.
func dial(t *testing.T, addr string) (*grpc.ClientConn, pb.ControllerClient) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc, pb.NewControllerClient(cc)
}

// checkLedger runs bbolt's consistency check on the ledger of a stopped jsctl.
func checkLedger(t *testing.T, dir string) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "ledger.db"), 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open ledger for the check: %v", err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ledger consistency check: %v", err)
	}
}
