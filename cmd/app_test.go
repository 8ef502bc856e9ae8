package cmd

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/jsctl/jsctl/event"
	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// testConfig is the default config on a temp data dir and random ports.
func testConfig(t *testing.T, dir string) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.GRPC.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t *testing.T, total time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(total)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s", total)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startApp opens an App on dir, after the tune functions adjusted it, and
// closes it when the test ends.
func startApp(t *testing.T, cfg Config, tune ...func(*App)) *App {
	t.Helper()
	a := NewApp(cfg, testLogger())
	for _, f := range tune {
		f(a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Open(ctx); err != nil {
		t.Fatalf("open app: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// dialApp returns a client connected to the app over loopback gRPC.
func dialApp(t testing.TB, a *App) (pb.ControllerClient, *grpc.ClientConn) {
	t.Helper()
	cc, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return pb.NewControllerClient(cc), cc
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func publish(t *testing.T, c pb.ControllerClient, req *pb.NewEventRequest) *pb.Event {
	t.Helper()
	resp, err := c.NewEvent(ctxT(t), req)
	if err != nil {
		t.Fatalf("NewEvent(%s): %v", req.GetEventType(), err)
	}
	if !resp.GetAck() {
		t.Fatalf("NewEvent(%s): ack=false", req.GetEventType())
	}
	return resp.GetEvent()
}

func getStatus(t *testing.T, c pb.ControllerClient, id string) *pb.EventStatusResponse {
	t.Helper()
	resp, err := c.EventStatus(ctxT(t), &pb.EventStatusRequest{CorrelationId: id, IncludePayload: true})
	if err != nil {
		t.Fatalf("EventStatus(%s): %v", id, err)
	}
	return resp
}

// streamMsgIDs returns the Nats-Msg-Id of every message in the app's stream.
func streamMsgIDs(t *testing.T, a *App) []string {
	t.Helper()
	s, err := a.queue.JetStream().Stream(ctxT(t), a.Config.NATS.Stream)
	if err != nil {
		t.Fatal(err)
	}
	st := s.CachedInfo().State
	var ids []string
	for seq := st.FirstSeq; seq <= st.LastSeq && st.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctxT(t), seq)
		if err != nil {
			t.Fatalf("get msg %d: %v", seq, err)
		}
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
	}
	return ids
}

func TestPublishThenStatus(t *testing.T) {
	a := startApp(t, testConfig(t, t.TempDir()))
	c, _ := dialApp(t, a)

	e := publish(t, c, &pb.NewEventRequest{EventType: "order.created", Payload: []byte(`{"id":1}`), Headers: map[string]string{"source": "shop"}})
	id, err := event.ParseID(e.GetCorrelationId())
	if err != nil {
		t.Fatalf("correlation id %q: %v", e.GetCorrelationId(), err)
	}
	if e.GetStatus() != pb.Status_STATUS_PUBLISHED || e.GetStreamSequence() == 0 {
		t.Fatalf("ack event: status %v seq %d, want PUBLISHED with a sequence", e.GetStatus(), e.GetStreamSequence())
	}

	st := getStatus(t, c, id.String())
	if st.GetStatus() != pb.Status_STATUS_PUBLISHED {
		t.Fatalf("status %v, want PUBLISHED", st.GetStatus())
	}
	got := st.GetEvent()
	if got.GetStreamSequence() != e.GetStreamSequence() || got.GetEventType() != "order.created" ||
		string(got.GetPayload()) != `{"id":1}` || got.GetHeaders()["source"] != "shop" {
		t.Fatalf("event = %v", got)
	}
	if h := st.GetHistory(); len(h) != 2 || h[0].GetTo() != pb.Status_STATUS_ACCEPTED ||
		h[1].GetFrom() != pb.Status_STATUS_ACCEPTED || h[1].GetTo() != pb.Status_STATUS_PUBLISHED {
		t.Fatalf("history = %v", h)
	}
	if len(st.GetGroups()) != 0 {
		t.Fatalf("groups = %v, want none", st.GetGroups())
	}

	// The message is in the stream on events.order.created with the ID as msg-id.
	s, err := a.queue.JetStream().Stream(ctxT(t), "EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctxT(t), e.GetStreamSequence())
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "events.order.created" || m.Header.Get(jetstream.MsgIDHeader) != id.String() || m.Header.Get("source") != "shop" {
		t.Fatalf("stream message: subject %q headers %v", m.Subject, m.Header)
	}
}

func TestRestartKeepsEvents(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	a := startApp(t, cfg)
	c, _ := dialApp(t, a)
	want := map[string]uint64{}
	for i := range 20 {
		e := publish(t, c, &pb.NewEventRequest{EventType: "order.created", Payload: []byte{byte(i)}})
		want[e.GetCorrelationId()] = e.GetStreamSequence()
	}
	if err := a.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	b := startApp(t, cfg)
	c, _ = dialApp(t, b)
	for id, seq := range want {
		st := getStatus(t, c, id)
		if st.GetStatus() != pb.Status_STATUS_PUBLISHED || st.GetEvent().GetStreamSequence() != seq {
			t.Fatalf("%s after restart: %v seq %d, want PUBLISHED seq %d", id, st.GetStatus(), st.GetEvent().GetStreamSequence(), seq)
		}
		if n := len(st.GetHistory()); n != 2 {
			t.Fatalf("%s after restart: %d history entries, want 2 (no republish)", id, n)
		}
	}
	if ids := streamMsgIDs(t, b); len(ids) != len(want) {
		t.Fatalf("stream has %d messages after restart, want %d", len(ids), len(want))
	}
	// New events continue the sequence.
	e := publish(t, c, &pb.NewEventRequest{EventType: "order.created"})
	if e.GetStreamSequence() != uint64(len(want)+1) {
		t.Fatalf("next sequence %d, want %d", e.GetStreamSequence(), len(want)+1)
	}
}

func TestIdempotency(t *testing.T) {
	a := startApp(t, testConfig(t, t.TempDir()))
	c, _ := dialApp(t, a)
	req := &pb.NewEventRequest{EventType: "order.created", Payload: []byte("a"), IdempotencyKey: "order-42"}
	first := publish(t, c, req)

	t.Run("SameBody", func(t *testing.T) {
		again := publish(t, c, req)
		if again.GetCorrelationId() != first.GetCorrelationId() || again.GetStreamSequence() != first.GetStreamSequence() {
			t.Fatalf("retry returned %s seq %d, want %s seq %d", again.GetCorrelationId(), again.GetStreamSequence(), first.GetCorrelationId(), first.GetStreamSequence())
		}
	})
	t.Run("ErrAlreadyExists", func(t *testing.T) {
		_, err := c.NewEvent(ctxT(t), &pb.NewEventRequest{EventType: "order.created", Payload: []byte("b"), IdempotencyKey: "order-42"})
		if status.Code(err) != codes.AlreadyExists {
			t.Fatalf("different body: %v, want AlreadyExists", err)
		}
	})
	t.Run("OtherKey", func(t *testing.T) {
		other := publish(t, c, &pb.NewEventRequest{EventType: "order.created", Payload: []byte("a"), IdempotencyKey: "order-43"})
		if other.GetCorrelationId() == first.GetCorrelationId() {
			t.Fatal("another key returned the same event")
		}
	})
	if ids := streamMsgIDs(t, a); len(ids) != 2 {
		t.Fatalf("stream has %d messages, want 2", len(ids))
	}
}

func TestHealthReflectionAndHTTP(t *testing.T) {
	a := startApp(t, testConfig(t, filepath.Join(t.TempDir(), "data")))
	_, cc := dialApp(t, a)

	hc, err := healthpb.NewHealthClient(cc).Check(ctxT(t), &healthpb.HealthCheckRequest{Service: "controller.v1.Controller"})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v, want SERVING", hc, err)
	}

	rctx, rcancel := context.WithCancel(ctxT(t))
	defer rcancel()
	stream, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(rctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"controller.v1.Controller", "grpc.health.v1.Health"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Fatalf("reflection lists %v, missing %s", names, want)
		}
	}

	for path, want := range map[string]int{"/healthz": http.StatusOK, "/readyz": http.StatusOK, "/debug/pprof/heap": http.StatusNotFound} {
		r, err := http.Get("http://" + a.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d", path, r.StatusCode, want)
		}
	}

	rcancel()
	// After Close, health is gone with the server; the files are private.
	a.Close()
	if err := a.readiness(); err == nil {
		t.Fatal("readiness after Close: ready")
	}
	for _, p := range []string{a.Config.DataDir, a.Config.LedgerPath(), a.Config.JetStreamDir()} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Fatalf("%s has mode %v, want no group or other access", filepath.Base(p), perm)
		}
	}
}

func TestPprofOptIn(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.HTTP.Pprof = true
	a := startApp(t, cfg)
	r, err := http.Get("http://" + a.HTTPAddr() + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusOK || !strings.Contains(string(body), "heap profile") {
		t.Fatalf("GET /debug/pprof/heap with http.pprof on: %d, %.80q", r.StatusCode, body)
	}
}

// statusCode is the gRPC code of err.
func statusCode(err error) codes.Code { return status.Code(err) }
