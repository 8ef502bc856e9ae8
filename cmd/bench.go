package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// benchOptions are the flags of `jsctl bench`.
type benchOptions struct {
	conn        connOptions // for --addr: TLS and token
	addr        string
	output      string
	total       int
	duration    time.Duration
	concurrency int
	size        int
	baselines   bool
	cpuProfile  string
	history     int           // events the history scenario loads
	settle      time.Duration // how long it waits after loading them
}

func (o *benchOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.addr, "addr", "", "benchmark a running jsctl at this address (default: start one in-process on a temp dir)")
	fs.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	fs.IntVarP(&o.total, "events", "n", 0, "operations per run (default: run for --duration)")
	fs.DurationVarP(&o.duration, "duration", "d", 5*time.Second, "how long each run lasts when -n is not given")
	fs.IntVarP(&o.concurrency, "concurrency", "c", 64, "concurrent callers (streams for the stream scenario)")
	fs.IntVarP(&o.size, "size", "s", 256, "payload size in bytes")
	fs.BoolVar(&o.baselines, "baselines", false, "also run the baselines (bare gRPC, raw JetStream) and print ratios")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the jsctl runs to this file")
	fs.IntVar(&o.history, "history", 1000000, "history scenario: events to load between the two NewEvent runs")
	fs.DurationVar(&o.settle, "history-settle", DefaultConfig().NATS.DuplicateWindow, "history scenario: wait after loading, so that JetStream's duplicate window has passed")
	o.conn.AddFlags(fs) // a server at --addr may want TLS and a token (roles publish, read and consume)
}

var benchScenarios = []string{"publish", "stream", "status", "consume"}

func newBenchCommand() *cobra.Command {
	o := &benchOptions{}
	c := &cobra.Command{
		Use:   "bench [publish|stream|status|consume|all|history]",
		Short: "Measure throughput and latency, with baselines from the same machine",
		Long: `Measure jsctl: publish (NewEvent unary), stream (PublishEvents), status
(EventStatus on existing IDs) or consume (Subscribe with ack, one group,
4 subscribers, end to end). Without --addr it starts jsctl in-process on a temp
dir with its durable defaults; the load generator runs on the same machine.

With --baselines it also runs, with the same payload and concurrency:
  (a) a bare gRPC no-op unary server        (the ceiling of a unary API)
  (b) raw JetStream sync publish, SyncAlways (durable, one fsync per message)
  (c) raw JetStream sync publish, default sync (not durable)
  (d) raw JetStream PublishAsync, default sync (not durable)
  (e) raw JetStream pull consumer, fetch + ack
and prints each scenario's ratio to its baselines.

history measures what a long history costs: NewEvent on an empty ledger;
then --history events loaded with PublishEvents; then, once JetStream's
duplicate window has passed (--history-settle), a restart timed to SERVING,
NewEvent again, and the ledger's bytes per event. In-process only.`,
		Example: `  jsctl bench publish --baselines
  jsctl bench all -d 10s -c 64 -s 256 --baselines -o json > bench.json
  jsctl bench status --addr 127.0.0.1:50051 -n 100000
  jsctl bench history --history 1000000`,
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: append(benchScenarios, "all", "history"),
		RunE: func(c *cobra.Command, args []string) error {
			scenarios := []string{"publish"}
			if len(args) == 1 {
				scenarios = []string{args[0]}
				if args[0] == "all" {
					scenarios = benchScenarios
				}
			}
			for _, s := range scenarios {
				if !slices.Contains(benchScenarios, s) && s != "history" {
					return fmt.Errorf("unknown scenario %q: want publish, stream, status, consume, all or history", s)
				}
			}
			if o.output != "text" && o.output != "json" {
				return fmt.Errorf("--output %q: want text or json", o.output)
			}
			if o.concurrency < 1 || o.size < 0 {
				return fmt.Errorf("--concurrency must be positive and --size not negative")
			}
			report, err := o.run(runContext(c), c.ErrOrStderr(), scenarios)
			if err != nil {
				return err
			}
			if o.output == "json" {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(report)
			}
			return report.print(c.OutOrStdout())
		},
	}
	o.AddFlags(c.Flags())
	return c
}

// benchReport is everything one `jsctl bench` measured.
type benchReport struct {
	Machine  benchMachine  `json:"machine"`
	Settings benchSettings `json:"settings"`
	Results  []benchResult `json:"results"`
	Ratios   []benchRatio  `json:"ratios,omitempty"`
	History  *benchHistory `json:"history,omitempty"`
}

type benchMachine struct {
	CPUs int    `json:"cpus"`
	OS   string `json:"os"`
	Arch string `json:"arch"`
	Go   string `json:"go"`
}

type benchSettings struct {
	Target      string `json:"target"`
	Events      int    `json:"events,omitempty"`
	Duration    string `json:"duration,omitempty"`
	Concurrency int    `json:"concurrency"`
	PayloadSize int    `json:"payload_bytes"`
}

// benchRatio compares a scenario with a baseline against a target.
type benchRatio struct {
	Scenario string  `json:"scenario"`
	Baseline string  `json:"baseline"`
	Ratio    float64 `json:"ratio"`
	Target   float64 `json:"target"`
	Met      bool    `json:"met"`
}

// benchTargets are the ratios jsctl aims for (issue #5), per scenario.
var benchTargets = map[string][]struct {
	baseline string
	target   float64
}{
	"publish": {{baseSyncAlways, 3}, {baseGRPC, 0.35}},
	"stream":  {{baseAsync, 0.4}},
	"status":  {{baseGRPC, 0.6}},
	"consume": {{baseConsume, 0}},
}

// setup returns the load of one run, an empty report and the payload.
func (o *benchOptions) setup() (load, *benchReport, []byte) {
	l := load{Total: o.total, Workers: o.concurrency}
	if o.total == 0 {
		l.Duration = o.duration
	}
	report := &benchReport{
		Machine:  benchMachine{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version()},
		Settings: benchSettings{Target: "in-process", Events: o.total, Concurrency: o.concurrency, PayloadSize: o.size},
	}
	if o.total == 0 {
		report.Settings.Duration = o.duration.String()
	}
	payload := make([]byte, o.size)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	return l, report, payload
}

func (o *benchOptions) run(ctx context.Context, progressOut io.Writer, scenarios []string) (*benchReport, error) {
	if len(scenarios) == 1 && scenarios[0] == "history" {
		return o.runHistory(ctx, progressOut)
	}
	l, report, payload := o.setup()

	addr, conn := o.addr, o.conn
	if addr == "" {
		srv, err := startBenchServer(ctx)
		if err != nil {
			return nil, err
		}
		defer srv.stop()
		addr, conn = srv.addr(), connOptions{} // in-process: plaintext, no auth
	} else {
		report.Settings.Target = addr
	}
	cc, err := conn.dial(addr)
	if err != nil {
		return nil, err
	}
	defer cc.Close()

	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	target := newBenchTarget(cc, payload)
	byName := map[string]benchResult{}
	for _, s := range scenarios {
		target.load = l
		target.load.Progress = o.progress(progressOut, s)
		var r benchResult
		switch s {
		case "publish":
			r = target.publish(ctx)
		case "stream":
			r = target.stream(ctx)
		case "status":
			r = target.status(ctx)
		case "consume":
			if target.load.Total == 0 {
				target.load.Total = o.consumeTotal()
			}
			r = target.consume(ctx)
		}
		report.Results = append(report.Results, r)
		byName[s] = r
	}
	if o.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if !o.baselines {
		return report, nil
	}

	needed := map[string]bool{}
	for _, s := range scenarios {
		for _, t := range benchTargets[s] {
			needed[t.baseline] = true
		}
	}
	for _, name := range []string{baseGRPC, baseSyncAlways, baseSync, baseAsync, baseConsume} {
		if !needed[name] && !(name == baseSync && needed[baseSyncAlways]) {
			continue
		}
		bl := l
		bl.Progress = o.progress(progressOut, name)
		var r benchResult
		var err error
		switch name {
		case baseGRPC:
			r, err = baselineGRPC(ctx, payload, bl)
		case baseSyncAlways:
			r, err = baselineSyncPublish(ctx, name, true, payload, bl)
		case baseSync:
			r, err = baselineSyncPublish(ctx, name, false, payload, bl)
		case baseAsync:
			r, err = baselineAsyncPublish(ctx, payload, bl)
		case baseConsume:
			r, err = baselineConsume(ctx, payload, o.consumeTotal())
		}
		if err != nil {
			return nil, fmt.Errorf("baseline %s: %w", name, err)
		}
		report.Results = append(report.Results, r)
		byName[name] = r
	}
	for _, s := range scenarios {
		for _, t := range benchTargets[s] {
			base := byName[t.baseline]
			if base.Throughput == 0 {
				continue
			}
			ratio := byName[s].Throughput / base.Throughput
			report.Ratios = append(report.Ratios, benchRatio{Scenario: s, Baseline: t.baseline, Ratio: ratio, Target: t.target, Met: ratio >= t.target})
		}
	}
	return report, nil
}

// consumeTotal is how many events the consume scenario and its baseline move.
func (o *benchOptions) consumeTotal() int {
	if o.total > 0 {
		return o.total
	}
	return 100000
}

// progress returns a progress callback drawing a bar on a terminal, or nil.
func (o *benchOptions) progress(w io.Writer, name string) func(int) {
	total := o.total
	if name == "consume" || name == baseConsume {
		total = o.consumeTotal()
	}
	return progressBar(w, name, total)
}

// progressBar draws a bar for name on w if it is a terminal; total 0 is
// unknown (a timed run).
func progressBar(w io.Writer, name string, total int) func(int) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	max := int64(total)
	if max == 0 {
		max = -1
	}
	bar := progressbar.NewOptions64(max, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(fmt.Sprintf("%-22s", name)),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("ops"),
		progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100*time.Millisecond))
	return func(done int) { bar.Set(done) }
}

// benchServer is jsctl running in-process on a temp dir with its defaults
// (durable ledger), for jsctl bench.
type benchServer struct {
	cfg Config
	app *App
}

// startBenchServer starts a benchServer on a new temp dir.
func startBenchServer(ctx context.Context) (*benchServer, error) {
	dir, err := os.MkdirTemp("", "jsctl-bench-")
	if err != nil {
		return nil, err
	}
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.GRPC.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = ""
	s := &benchServer{cfg: cfg}
	tuneRuntime(cfg, slog.New(slog.DiscardHandler)) // as jsctl serve does; the whole bench process shares it
	if _, err := s.open(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.cfg.GRPC.Listen = s.app.GRPCAddr() // a restart keeps the address
	return s, nil
}

// open starts the app on the server's dir and returns how long it took to
// serve.
func (s *benchServer) open(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	s.app = NewApp(s.cfg, slog.New(slog.DiscardHandler))
	if err := s.app.Open(ctx); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// restart stops the app and starts it again on the same dir and address,
// and returns the time from the start to serving.
func (s *benchServer) restart(ctx context.Context) (time.Duration, error) {
	s.app.Close()
	return s.open(ctx)
}

func (s *benchServer) addr() string { return s.app.GRPCAddr() }

// stop closes the app and removes its dir.
func (s *benchServer) stop() {
	s.app.Close()
	os.RemoveAll(s.cfg.DataDir)
}

func (r *benchReport) print(w io.Writer) error {
	fmt.Fprintf(w, "machine: %d CPUs, %s/%s, %s; target %s; %d callers, %d B payloads", r.Machine.CPUs, r.Machine.OS, r.Machine.Arch, r.Machine.Go,
		r.Settings.Target, r.Settings.Concurrency, r.Settings.PayloadSize)
	if r.Settings.Duration != "" {
		fmt.Fprintf(w, ", %s per run\n\n", r.Settings.Duration)
	} else {
		fmt.Fprintf(w, ", %d operations per run\n\n", r.Settings.Events)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tops\terrors\tops/s\tp50\tp90\tp99\tmax\t")
	for _, res := range r.Results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t\n", res.Name, res.Ops, res.Errors, res.Throughput,
			roundDur(res.P50), roundDur(res.P90), roundDur(res.P99), roundDur(res.Max))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, res := range r.Results {
		if res.FirstError != "" {
			fmt.Fprintf(w, "%s: first error: %s\n", res.Name, res.FirstError)
		}
	}
	if len(r.Ratios) > 0 {
		fmt.Fprintln(w, "\nratios:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, q := range r.Ratios {
			verdict := ""
			if q.Target > 0 {
				verdict = fmt.Sprintf("target >= %.2fx: %s", q.Target, map[bool]string{true: "met", false: "NOT met"}[q.Met])
			}
			fmt.Fprintf(tw, "  %s / %s\t%.2fx\t%s\n", q.Scenario, q.Baseline, q.Ratio, verdict)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if h := r.History; h != nil {
		fmt.Fprintf(w, "\nwith %d events in the ledger:\n", h.Events)
		fmt.Fprintf(w, "  cold start to SERVING   %-8s target < 1s: %s\n", roundDur(h.ColdStart), map[bool]string{true: "met", false: "NOT met"}[h.ColdStart < time.Second])
		fmt.Fprintf(w, "  ledger bytes per event  %-8d target <= payload + 300 (%d): %s\n", h.BytesPerEvent, r.Settings.PayloadSize+300, map[bool]string{true: "met", false: "NOT met"}[h.BytesPerEvent <= int64(r.Settings.PayloadSize+300)])
	}
	return nil
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(time.Millisecond)
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
