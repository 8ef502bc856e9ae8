package cmd

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// TestMetrics scrapes /metrics after some traffic.
func TestMetrics(t *testing.T) {
	a, c := consumerApp(t, GroupConfig{Name: "m"})
	var ids []string
	for range 3 {
		ids = append(ids, publish(t, c, &pb.NewEventRequest{EventType: "order.created", Payload: []byte("x")}).GetCorrelationId())
	}
	sub := subscribe(t, c, "m", nil, 1)
	sub.ack(sub.next())
	waitStatus(t, c, ids[0], pb.Status_STATUS_PROCESSED)
	sub.cancel()
	wants := []string{
		`jsctl_events_total{event_type="order.created",status="accepted"} 3`,
		`jsctl_events_total{event_type="order.created",status="published"} 3`,
		`jsctl_events_total{event_type="order.created",status="delivered"}`,
		`jsctl_events_total{event_type="order.created",status="processed"} 1`,
		`jsctl_new_event_duration_seconds_count 3`,
		`jsctl_ledger_commit_duration_seconds_count`,
		`jsctl_ledger_commit_appends_sum`,
		`jsctl_ledger_commit_pages_sum`,
		`jsctl_ledger_commit_write_seconds_count`,
		`jsctl_stream_messages 3`,
		`jsctl_group_pending{group="m"}`,
		`jsctl_group_ack_pending{group="m"}`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="NewEvent",grpc_service="controller.v1.Controller",grpc_type="unary"} 3`,
		`grpc_server_handling_seconds_bucket`,
		`go_goroutines`,
	}
	waitForMetrics(t, a, wants...)
}

// waitForMetrics scrapes /metrics until it holds every string in wants:
// counters are updated right after the commit a reader may already see.
func waitForMetrics(t *testing.T, a *App, wants ...string) {
	t.Helper()
	var missing []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get("http://" + a.HTTPAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		missing = missing[:0]
		for _, want := range wants {
			if !strings.Contains(string(body), want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %q after 5s", missing)
		}
	}
}

func TestTypeLabelCap(t *testing.T) {
	m := newAppMetrics()
	for i := range maxTypeLabels {
		if got := m.typeLabel(string(rune('a'+i%26)) + strings.Repeat("x", i)); got == "other" {
			t.Fatalf("type %d capped", i)
		}
	}
	if got := m.typeLabel("one.too.many"); got != "other" {
		t.Fatalf("type beyond the cap: %q", got)
	}
	if got := m.typeLabel("a"); got != "a" {
		t.Fatalf("known type: %q", got)
	}
}
