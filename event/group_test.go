package event_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jsctl/jsctl/event"
)

func TestMatchType(t *testing.T) {
	tests := []struct {
		name, filter, typ string
		want              bool
	}{
		{"Exact", "order.created", "order.created", true},
		{"ExactSingleToken", "order", "order", true},
		{"ExactOtherToken", "order.created", "order.paid", false},
		{"ExactOtherFirstToken", "order.created", "user.created", false},
		{"StarOneToken", "order.*", "order.created", true},
		{"StarNotTwoTokens", "order.*", "order.a.b", false},
		{"StarNotZeroTokens", "order.*", "order", false},
		{"StarFirst", "*.created", "order.created", true},
		{"StarFirstNotTwoTokens", "*.created", "a.b.created", false},
		{"StarFirstOtherLast", "*.created", "order.paid", false},
		{"StarAlone", "*", "order", true},
		{"StarAloneNotTwoTokens", "*", "order.created", false},
		{"StarMiddle", "a.*.c", "a.b.c", true},
		{"StarMiddleOtherLast", "a.*.c", "a.b.d", false},
		{"GreaterThanOneToken", "order.>", "order.created", true},
		{"GreaterThanManyTokens", "order.>", "order.created.eu.v2", true},
		{"GreaterThanNotZeroTokens", "order.>", "order", false},
		{"GreaterThanOtherPrefix", "order.>", "orders.created", false},
		{"GreaterThanAloneOneToken", ">", "order", true},
		{"GreaterThanAloneManyTokens", ">", "a.b.c.d", true},
		{"StarThenGreaterThan", "*.>", "a.b", true},
		{"StarThenGreaterThanNotOneToken", "*.>", "a", false},
		{"FilterShorter", "order", "order.created", false},
		{"FilterLonger", "order.created.eu", "order.created", false},
		{"PrefixIsNotAToken", "ord", "order", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := event.MatchType(tc.filter, tc.typ); got != tc.want {
				t.Errorf("MatchType(%q, %q) = %v, want %v", tc.filter, tc.typ, got, tc.want)
			}
		})
	}
}

func TestLimitsCheckFilter(t *testing.T) {
	l := event.DefaultLimits()
	for _, f := range []string{"order.>", "*.created", ">", "*", "a.*.c", "order.created", "*.*.>", "A-b_c.9"} {
		t.Run("OK/"+f, func(t *testing.T) {
			if err := l.CheckFilter(f); err != nil {
				t.Errorf("CheckFilter(%q) = %v, want nil", f, err)
			}
		})
	}

	invalid := []struct {
		name, filter string
	}{
		{"Empty", ""},
		{"EmptyToken", "a..b"},
		{"GreaterThanNotLast", "a.>.b"},
		{"GreaterThanFirstOfTwo", ">.a"},
		{"StarInsideToken", "or*der"},
		{"GreaterThanInsideToken", "order.a>"},
		{"Space", "a b"},
		{"Dollar", "$x"},
		{"LeadingDot", ".a"},
		{"TrailingDot", "a."},
		{"TrailingDotAfterStar", "*."},
		{"Inbox", "_INBOX.>"},
		{"OverLimit", strings.Repeat("a", 256)},
	}
	for _, tc := range invalid {
		t.Run("ErrInvalid/"+tc.name, func(t *testing.T) {
			err := l.CheckFilter(tc.filter)
			if !errors.Is(err, event.ErrInvalid) {
				t.Fatalf("CheckFilter(%q) = %v, want an error wrapping ErrInvalid", tc.filter, err)
			}
		})
	}
}

func TestDefaultGroup(t *testing.T) {
	g := event.DefaultGroup("orders")
	if g.Name != "orders" || g.MaxDeliveries != 5 || g.AckWait != 30*time.Second || g.MaxAckPending != 1000 ||
		g.Filters != nil || g.Backoff != nil || g.StartSequence != 0 {
		t.Errorf("DefaultGroup = %+v, want every event, 5 deliveries, 30s ack wait, no backoff, 1000 unsettled", g)
	}
}

func TestGroupCheck(t *testing.T) {
	l := event.DefaultLimits()
	valid := []struct {
		name   string
		change func(*event.Group)
	}{
		{"Default", func(*event.Group) {}},
		{"AllNameChars", func(g *event.Group) { g.Name = "A-z_09" }},
		{"Name64", func(g *event.Group) { g.Name = strings.Repeat("g", 64) }},
		{"Filters", func(g *event.Group) { g.Filters = []string{"order.>", "*.created", ">"} }},
		{"MinimalSettings", func(g *event.Group) {
			g.MaxDeliveries, g.AckWait, g.MaxAckPending = 1, 100*time.Millisecond, 1
		}},
		{"Backoff", func(g *event.Group) { g.Backoff = []time.Duration{time.Second, 5 * time.Second} }},
		{"BackoffAsLongAsMaxDeliveries", func(g *event.Group) {
			g.MaxDeliveries = 3
			g.Backoff = []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}
		}},
	}
	for _, tc := range valid {
		t.Run("OK/"+tc.name, func(t *testing.T) {
			g := event.DefaultGroup("orders")
			tc.change(&g)
			if err := g.Check(l); err != nil {
				t.Errorf("Check(%+v) = %v, want nil", g, err)
			}
		})
	}

	invalid := []struct {
		name   string
		change func(*event.Group)
	}{
		{"EmptyName", func(g *event.Group) { g.Name = "" }},
		{"Name65", func(g *event.Group) { g.Name = strings.Repeat("g", 65) }},
		{"NameWithDot", func(g *event.Group) { g.Name = "a.b" }},
		{"NameWithSpace", func(g *event.Group) { g.Name = "a b" }},
		{"NameWithStar", func(g *event.Group) { g.Name = "a*" }},
		{"MaxDeliveriesZero", func(g *event.Group) { g.MaxDeliveries = 0 }},
		{"MaxDeliveriesNegative", func(g *event.Group) { g.MaxDeliveries = -1 }},
		{"AckWait50ms", func(g *event.Group) { g.AckWait = 50 * time.Millisecond }},
		{"AckWaitZero", func(g *event.Group) { g.AckWait = 0 }},
		{"MaxAckPendingZero", func(g *event.Group) { g.MaxAckPending = 0 }},
		{"BackoffZeroEntry", func(g *event.Group) { g.Backoff = []time.Duration{time.Second, 0} }},
		{"BackoffNegativeEntry", func(g *event.Group) { g.Backoff = []time.Duration{-time.Second} }},
		{"MaxDeliveriesBelowBackoffSteps", func(g *event.Group) {
			g.MaxDeliveries = 2
			g.Backoff = []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}
		}},
		{"BadFilter", func(g *event.Group) { g.Filters = []string{"order.>", "a.>.b"} }},
		{"EmptyFilter", func(g *event.Group) { g.Filters = []string{""} }},
	}
	for _, tc := range invalid {
		t.Run("ErrInvalid/"+tc.name, func(t *testing.T) {
			g := event.DefaultGroup("orders")
			tc.change(&g)
			err := g.Check(l)
			if !errors.Is(err, event.ErrInvalid) {
				t.Fatalf("Check(%+v) = %v, want an error wrapping ErrInvalid", g, err)
			}
		})
	}
}

func TestGroupMatches(t *testing.T) {
	tests := []struct {
		name    string
		filters []string
		typ     string
		want    bool
	}{
		{"NoFiltersMatchEverything", nil, "anything.at.all", true},
		{"OneFilterMatches", []string{"order.>"}, "order.created", true},
		{"OneFilterDoesNotMatch", []string{"order.>"}, "user.created", false},
		{"AnyFilterMatches", []string{"order.>", "*.created"}, "user.created", true},
		{"NoFilterMatches", []string{"order.>", "*.created"}, "user.deleted", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := event.DefaultGroup("g")
			g.Filters = tc.filters
			if got := g.Matches(tc.typ); got != tc.want {
				t.Errorf("Matches(%q) with filters %v = %v, want %v", tc.typ, tc.filters, got, tc.want)
			}
		})
	}
}

func TestGroupInterested(t *testing.T) {
	g := event.DefaultGroup("g")
	g.Filters = []string{"order.>"}
	g.StartSequence = 10
	tests := []struct {
		name string
		typ  string
		seq  uint64
		want bool
	}{
		{"AfterStart", "order.created", 11, true},
		{"LongAfterStart", "order.created", 1000, true},
		{"AtStart", "order.created", 10, false},
		{"BeforeStart", "order.created", 3, false},
		{"Unpublished", "order.created", 0, false},
		{"AfterStartNoMatch", "user.created", 11, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := g.Interested(tc.typ, tc.seq); got != tc.want {
				t.Errorf("Interested(%q, %d) with start 10 = %v, want %v", tc.typ, tc.seq, got, tc.want)
			}
		})
	}

	t.Run("StartZeroUnpublished", func(t *testing.T) {
		g := event.DefaultGroup("g")
		if g.Interested("a", 0) {
			t.Errorf("Interested(a, 0) with start 0 = true, want false (sequence 0 is not published)")
		}
		if !g.Interested("a", 1) {
			t.Errorf("Interested(a, 1) with start 0 = false, want true")
		}
	})
}

func TestGroupBackoffFor(t *testing.T) {
	backoff := []time.Duration{time.Second, 5 * time.Second, 30 * time.Second}
	tests := []struct {
		name       string
		backoff    []time.Duration
		deliveries int
		want       time.Duration
	}{
		{"NoBackoff", nil, 1, 0},
		{"NoBackoffLater", nil, 7, 0},
		{"First", backoff, 1, time.Second},
		{"Second", backoff, 2, 5 * time.Second},
		{"Last", backoff, 3, 30 * time.Second},
		{"ClampsToLast", backoff, 4, 30 * time.Second},
		{"ClampsToLastFarAway", backoff, 1000, 30 * time.Second},
		{"ZeroDeliveries", backoff, 0, 0},
		{"NegativeDeliveries", backoff, -1, 0},
		{"SingleStepRepeats", []time.Duration{2 * time.Second}, 5, 2 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := event.DefaultGroup("g")
			g.Backoff = tc.backoff
			if got := g.BackoffFor(tc.deliveries); got != tc.want {
				t.Errorf("BackoffFor(%d) with backoff %v = %v, want %v", tc.deliveries, tc.backoff, got, tc.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	groups := func(statuses ...event.Status) []event.GroupStatus {
		out := make([]event.GroupStatus, len(statuses))
		for i, s := range statuses {
			out[i] = event.GroupStatus{Group: string(rune('a' + i)), Status: s}
		}
		return out
	}
	const (
		accepted  = event.StatusAccepted
		published = event.StatusPublished
		delivered = event.StatusDelivered
		processed = event.StatusProcessed
		failed    = event.StatusFailed
	)
	tests := []struct {
		name    string
		current event.Status
		groups  []event.GroupStatus
		want    event.Status
	}{
		{"NoGroupsKeepsPublished", published, nil, published},
		{"NoGroupsKeepsAccepted", accepted, nil, accepted},
		{"NoGroupsKeepsProcessed", processed, nil, processed},
		{"AcceptedStays", accepted, groups(processed, processed), accepted},
		{"AcceptedStaysWithFailed", accepted, groups(failed), accepted},
		{"OneFailed", published, groups(failed), failed},
		{"AnyFailed", delivered, groups(processed, failed, published), failed},
		{"FailedBeforeProcessed", published, groups(failed, processed), failed},
		{"AllProcessed", delivered, groups(processed, processed), processed},
		{"OneProcessed", published, groups(processed), processed},
		{"SomeProcessedSomePublished", published, groups(processed, published), delivered},
		{"OneDelivered", published, groups(delivered, published), delivered},
		{"AllDelivered", published, groups(delivered, delivered), delivered},
		{"DeliveredStays", delivered, groups(delivered), delivered},
		{"AllPublished", published, groups(published, published), published},
		{"RedriveReopensFailed", failed, groups(published), published},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := event.Summarize(tc.current, tc.groups); got != tc.want {
				t.Errorf("Summarize(%s, %+v) = %s, want %s", tc.current, tc.groups, got, tc.want)
			}
		})
	}
}
