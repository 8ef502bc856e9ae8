package cmd

import (
	"io"
	"net/http"
	"strings"
	"testing"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// TestMetrics scrapes /metrics after some traffic.
func TestMetrics(t *testing.T) {
	a, c := consumerApp(t, GroupConfig{Name: "m"})
	for range 3 {
		publish(t, c, &pb.NewEventRequest{EventType: "order.created", Payload: []byte("x")})
	}
	resp, err := http.Get("http://" + a.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`jsctl_events_published_total{event_type="order.created"} 3`,
		`jsctl_new_event_duration_seconds_count 3`,
		`jsctl_ledger_commit_duration_seconds_count`,
		`jsctl_ledger_commit_appends_sum`,
		`jsctl_stream_messages 3`,
		`jsctl_group_pending{group="m"} 3`,
		`jsctl_group_ack_pending{group="m"} 0`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="NewEvent",grpc_service="controller.v1.Controller",grpc_type="unary"} 3`,
		`grpc_server_handling_seconds_bucket`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
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
