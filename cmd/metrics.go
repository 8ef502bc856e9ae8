package cmd

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/jsctl/jsctl/boltstore"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/jsctl/jsctl/event"
)

// maxTypeLabels caps the event_type label: the first 100 types get their own
// series, later ones share event_type="other".
const maxTypeLabels = 100

// appMetrics are jsctl's Prometheus metrics, served on /metrics.
type appMetrics struct {
	reg  *prometheus.Registry
	grpc *grpcprom.ServerMetrics

	events        *prometheus.CounterVec
	newEvent      prometheus.Histogram
	commitEvents  prometheus.Histogram
	commitSeconds prometheus.Histogram
	// bbolt's share of a commit: pages written, and writing them with its
	// two fdatasyncs
	commitPages        prometheus.Histogram
	commitWriteSeconds prometheus.Histogram
	expired            *prometheus.CounterVec

	typesMu sync.RWMutex
	types   map[string]bool
}

func newAppMetrics() *appMetrics {
	m := &appMetrics{
		reg: prometheus.NewRegistry(),
		grpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets(prometheus.ExponentialBuckets(0.0005, 2, 14)))),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jsctl_events_total",
			Help: "Events reaching a status (accepted: durable in the ledger; published: acknowledged; delivered, processed, failed: overall, from consumers), by event type (at most 100 types, then \"other\").",
		}, []string{"event_type", "status"}),
		newEvent: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jsctl_new_event_duration_seconds", Help: "Time from a NewEvent request to its ack.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		commitEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jsctl_ledger_commit_appends", Help: "Events appended per ledger group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13),
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jsctl_ledger_commit_duration_seconds", Help: "Duration of a ledger group commit, fsync included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
		commitPages: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jsctl_ledger_commit_pages", Help: "Pages bbolt wrote per ledger group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		commitWriteSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jsctl_ledger_commit_write_seconds", Help: "Time a ledger group commit spent writing its pages and in its two fdatasyncs.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jsctl_ledger_expired_total",
			Help: "Events removed from the ledger by retention, by the status they had (published, delivered, processed, failed).",
		}, []string{"status"}),
		types: map[string]bool{},
	}
	m.reg.MustRegister(m.grpc, m.events, m.newEvent, m.commitEvents, m.commitSeconds, m.commitPages, m.commitWriteSeconds, m.expired,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// typeLabel caps the event_type label's cardinality. Known types take only
// the read lock: this runs once per event.
func (m *appMetrics) typeLabel(t string) string {
	m.typesMu.RLock()
	known, full := m.types[t], len(m.types) >= maxTypeLabels
	m.typesMu.RUnlock()
	switch {
	case known:
		return t
	case full:
		return "other"
	}
	m.typesMu.Lock()
	defer m.typesMu.Unlock()
	if m.types[t] {
		return t
	}
	if len(m.types) >= maxTypeLabels {
		return "other"
	}
	m.types[t] = true
	return t
}

func (m *appMetrics) onAccepted(eventType string) {
	m.events.WithLabelValues(m.typeLabel(eventType), "accepted").Inc()
}

func (m *appMetrics) onPublished(e *event.Event, took time.Duration) {
	m.events.WithLabelValues(m.typeLabel(e.Type), "published").Inc()
	m.newEvent.Observe(took.Seconds())
}

// onStatus counts consumer-driven status changes (not the way back to
// PUBLISHED after a redrive).
func (m *appMetrics) onStatus(eventType string, to event.Status) {
	if to > event.StatusPublished {
		m.events.WithLabelValues(m.typeLabel(eventType), strings.ToLower(to.String())).Inc()
	}
}

func (m *appMetrics) onExpire(status event.Status, n int) {
	m.expired.WithLabelValues(strings.ToLower(status.String())).Add(float64(n))
}

func (m *appMetrics) onCommit(c boltstore.CommitStats) {
	if c.Appends > 0 {
		m.commitEvents.Observe(float64(c.Appends))
	}
	m.commitSeconds.Observe(c.Took.Seconds())
	m.commitWriteSeconds.Observe(c.WriteTime.Seconds())
	m.commitPages.Observe(float64(c.Pages))
}

// streamCollector reports the stream's size and each group's backlog at
// scrape time.
type streamCollector struct {
	js     jetstream.JetStream
	stream string
	groups func() []event.Group

	msgs, bytes, pending, ackPending *prometheus.Desc
}

func newStreamCollector(js jetstream.JetStream, stream string, groups func() []event.Group) *streamCollector {
	return &streamCollector{
		js: js, stream: stream, groups: groups,
		msgs:       prometheus.NewDesc("jsctl_stream_messages", "Messages in the stream.", nil, nil),
		bytes:      prometheus.NewDesc("jsctl_stream_bytes", "Bytes in the stream.", nil, nil),
		pending:    prometheus.NewDesc("jsctl_group_pending", "Events not yet delivered to the group.", []string{"group"}, nil),
		ackPending: prometheus.NewDesc("jsctl_group_ack_pending", "Deliveries of the group not yet settled.", []string{"group"}, nil),
	}
}

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.msgs
	ch <- c.bytes
	ch <- c.pending
	ch <- c.ackPending
}

func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := c.js.Stream(ctx, c.stream)
	if err != nil {
		return
	}
	st := s.CachedInfo().State
	ch <- prometheus.MustNewConstMetric(c.msgs, prometheus.GaugeValue, float64(st.Msgs))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(st.Bytes))
	for _, g := range c.groups() {
		info, err := s.Consumer(ctx, g.Name)
		if err != nil {
			continue
		}
		ci := info.CachedInfo()
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(ci.NumPending), g.Name)
		ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(ci.NumAckPending), g.Name)
	}
}
