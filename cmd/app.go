package cmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jsctl/jsctl/boltstore"
	"github.com/jsctl/jsctl/embedded"
	"github.com/jsctl/jsctl/event"
	"github.com/jsctl/jsctl/rpc"
)

// Compile-time checks that the adapters fit the domain's interfaces.
var (
	_ event.Ledger = (*boltstore.Store)(nil)
	_ event.Queue  = (*embedded.Queue)(nil)
)

// App is a running jsctl: ledger, embedded NATS, pipeline, gRPC and HTTP. Open
// starts everything in order and returns once the API reports SERVING; Close
// stops it in reverse.
type App struct {
	Config Config
	Logger *slog.Logger

	ledger   *boltstore.Store
	nats     *embedded.Server
	nc       *nats.Conn
	queue    *embedded.Queue
	pipeline *event.Pipeline
	rpc      *rpc.Server
	grpcLis  net.Listener
	http     *http.Server
	httpLis  net.Listener

	metrics  *appMetrics
	ready    atomic.Bool
	stop     context.CancelFunc // stops background work
	bg       sync.WaitGroup
	closeErr error
	closed   sync.Once

	// tuneLedger, if set, adjusts the ledger before it opens: tests use it
	// for a fake clock and a short cleanup interval.
	tuneLedger func(*boltstore.Store)
}

// NewApp returns an App for cfg, which must be valid.
func NewApp(cfg Config, log *slog.Logger) *App {
	if log == nil {
		log = slog.Default()
	}
	return &App{Config: cfg, Logger: log}
}

// Open starts the app: it takes the ledger (failing fast if another process
// holds it), binds the listeners, starts NATS and the stream, recovers events a
// crash left unpublished, then serves. On error everything opened is closed.
func (a *App) Open(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	cfg := &a.Config
	for _, dir := range []string{cfg.DataDir, cfg.JetStreamDir()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
	}

	a.metrics = newAppMetrics()
	a.ledger = boltstore.New(cfg.LedgerPath())
	a.ledger.OnCommit = a.metrics.onCommit
	a.ledger.OnStatus = a.metrics.onStatus
	a.ledger.OnExpire = a.metrics.onExpire
	a.ledger.LockTimeout = cfg.Ledger.LockTimeout
	a.ledger.IdempotencyTTL = cfg.Ledger.IdempotencyTTL
	a.ledger.MaxBatch = cfg.Ledger.MaxBatch
	a.ledger.MaxSize = cfg.Ledger.MaxSizeBytes
	a.ledger.Retention = boltstore.Retention(cfg.Ledger.Retention)
	a.ledger.Logger = a.Logger
	if os.Getenv("JSCTL_UNSAFE_LEDGER_NO_FSYNC") == "1" {
		// Only for crashtest's control run: proves the power-loss test
		// catches a ledger that does not fsync. Acks are not durable.
		a.Logger.Warn("JSCTL_UNSAFE_LEDGER_NO_FSYNC=1: the ledger does not fsync; acknowledged events can be lost")
		a.ledger.UnsafeNoSync = true
	}
	if a.tuneLedger != nil {
		a.tuneLedger(a.ledger)
	}
	if err := a.ledger.Open(); err != nil {
		a.ledger = nil
		return err
	}

	if a.grpcLis, err = net.Listen("tcp", cfg.GRPC.Listen); err != nil {
		return fmt.Errorf("grpc.listen: %w", err)
	}
	if cfg.HTTP.Listen != "" {
		if a.httpLis, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
			return fmt.Errorf("http.listen: %w", err)
		}
		a.http = &http.Server{Handler: a.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
		go a.http.Serve(a.httpLis)
	}

	maxRecv := cfg.Limits.MaxPayloadBytes + cfg.Limits.MaxHeaderBytes + 64<<10
	a.nats = embedded.New(cfg.JetStreamDir())
	a.nats.Listen = cfg.NATS.Listen
	a.nats.User, a.nats.Password, a.nats.Token = cfg.NATS.User, cfg.NATS.Password, cfg.NATS.Token
	a.nats.MaxPayload = int32(maxRecv)
	a.nats.Logger = a.Logger
	if err := a.nats.Open(); err != nil {
		a.nats = nil
		return err
	}
	if a.nc, err = a.nats.Connect("jsctl"); err != nil {
		return err
	}
	a.queue = embedded.NewQueue(a.nc)
	a.queue.Stream = cfg.NATS.Stream
	a.queue.Prefix = cfg.NATS.SubjectPrefix
	a.queue.DuplicateWindow = cfg.NATS.DuplicateWindow
	a.queue.AckTimeout = cfg.NATS.AckTimeout
	a.queue.MaxAge, a.queue.MaxBytes = cfg.NATS.MaxAge, cfg.NATS.MaxBytes
	a.queue.MaxInFlight = cfg.NATS.MaxInFlight
	if err := a.queue.Open(ctx); err != nil {
		return err
	}

	a.pipeline = event.NewPipeline(a.ledger, a.queue, a.queue)
	a.pipeline.Limits = cfg.EventLimits()
	a.pipeline.Logger = a.Logger
	a.pipeline.OnAccepted = a.metrics.onAccepted
	a.pipeline.OnPublished = a.metrics.onPublished
	a.metrics.reg.MustRegister(newStreamCollector(a.queue.JetStream(), cfg.NATS.Stream, a.ledger.Groups))
	start := time.Now()
	rec, err := a.pipeline.Recover(ctx)
	if err != nil {
		return fmt.Errorf("recover unpublished events: %w", err)
	}
	if rec != (event.Recovery{}) {
		a.Logger.Warn("recovered events left by an unclean stop",
			"found_in_stream", rec.Found, "republished", rec.Republished, "lost_tail_republished", rec.LostTail, "took", time.Since(start))
	}

	if err := a.openGroups(ctx); err != nil {
		return err
	}

	bgctx, stop := context.WithCancel(context.Background())
	a.stop = stop
	a.bg.Add(3)
	go a.republishLoop(bgctx)
	go a.returnMemoryLoop(bgctx)
	go func() {
		defer a.bg.Done()
		if err := a.pipeline.TrackAdvisories(bgctx); err != nil {
			a.Logger.Error("consumer advisories", "err", err)
		}
	}()

	creds, err := serverTLS(cfg.GRPC)
	if err != nil {
		return err
	}
	burst := cfg.GRPC.RateBurst
	if burst == 0 {
		burst = int(cfg.GRPC.RateLimit)
	}
	a.rpc = rpc.NewServer(a.pipeline, rpc.Options{
		MaxRecvBytes: maxRecv, Logger: a.Logger, Tokens: cfg.RPCTokens(), Creds: creds,
		MaxConcurrentStreams: cfg.GRPC.MaxConcurrentStreams, KeepaliveMinTime: cfg.GRPC.KeepaliveMinTime,
		RatePerSecond: cfg.GRPC.RateLimit, RateBurst: burst, Metrics: a.metrics.grpc,
	})
	a.rpc.SetServing(true)
	go a.rpc.Serve(a.grpcLis)
	a.ready.Store(true)
	a.Logger.Info("jsctl serving", "grpc", a.GRPCAddr(), "http", a.HTTPAddr(), "data_dir", cfg.DataDir, "nats", a.nats.ClientURL())
	return nil
}

// openGroups creates or updates the configured consumer groups, and makes
// sure every group the ledger knows still has its JetStream consumer.
func (a *App) openGroups(ctx context.Context) error {
	declared := map[string]bool{}
	for _, gc := range a.Config.Groups {
		g := gc.Group()
		if err := a.pipeline.SaveGroup(ctx, &g); err != nil {
			return fmt.Errorf("group %s: %w", g.Name, err)
		}
		declared[g.Name] = true
	}
	for _, g := range a.ledger.Groups() {
		if !declared[g.Name] {
			if err := a.queue.EnsureGroup(ctx, g); err != nil {
				return fmt.Errorf("group %s: %w", g.Name, err)
			}
		}
	}
	return nil
}

// republishLoop publishes events whose publish failed, with exponential
// backoff, until none is left.
func (a *App) republishLoop(ctx context.Context) {
	defer a.bg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.pipeline.RepublishRequested():
		}
		_, err := backoff.Retry(ctx, func() (struct{}, error) {
			_, n, err := a.pipeline.Republish(ctx, time.Now().Add(-a.Config.NATS.AckTimeout))
			if err == nil && n > 0 {
				a.Logger.Info("published events after earlier failures", "events", n)
			}
			return struct{}{}, err
		}, backoff.WithBackOff(backoff.NewExponentialBackOff()), backoff.WithMaxElapsedTime(0))
		if err != nil && ctx.Err() == nil {
			a.Logger.Error("republish", "err", err)
		}
	}
}

// GRPCAddr is the address the gRPC API listens on.
func (a *App) GRPCAddr() string { return addrOf(a.grpcLis) }

// HTTPAddr is the address /healthz and /readyz are served on; empty if off.
func (a *App) HTTPAddr() string { return addrOf(a.httpLis) }

func addrOf(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

func (a *App) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.readiness(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if a.Config.HTTP.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// minFreeBytes is the free space under the data dir below which /readyz
// reports not ready: the ledger and JetStream need room to take events.
const minFreeBytes = 64 << 20

// readiness returns why the app cannot take events, or nil: still starting
// or stopping, NATS down, or the data dir's disk (nearly) full.
func (a *App) readiness() error {
	if !a.ready.Load() {
		return errors.New("starting or stopping")
	}
	if a.nats == nil || !a.nats.Running() {
		return errors.New("NATS JetStream is not running")
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(a.Config.DataDir, &st); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if free := st.Bavail * uint64(st.Bsize); free < minFreeBytes {
		return fmt.Errorf("disk nearly full: %d bytes free under %s", free, a.Config.DataDir)
	}
	return nil
}

// Run opens the app, serves until ctx is done, then closes it.
func (a *App) Run(ctx context.Context) error {
	if err := a.Open(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	a.Logger.Info("stopping")
	return a.Close()
}

// Close stops serving (health NOT_SERVING first, in-flight calls get up to
// ShutdownTimeout), then closes NATS and the ledger, which commits what is
// queued. It is safe to call more than once.
func (a *App) Close() error {
	a.closed.Do(func() {
		a.ready.Store(false)
		var errs []error
		if a.rpc != nil {
			a.rpc.Stop(a.Config.ShutdownTimeout)
		} else if a.grpcLis != nil {
			a.grpcLis.Close()
		}
		if a.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			a.http.Shutdown(ctx)
			cancel()
		} else if a.httpLis != nil {
			a.httpLis.Close()
		}
		if a.stop != nil {
			a.stop()
			a.bg.Wait()
		}
		if a.nc != nil {
			a.nc.Close()
		}
		if a.nats != nil {
			errs = append(errs, a.nats.Close())
		}
		if a.ledger != nil {
			errs = append(errs, a.ledger.Close())
		}
		a.closeErr = errors.Join(errs...)
	})
	return a.closeErr
}
