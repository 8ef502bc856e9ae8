package event_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/jsctl/jsctl/event"
)

func TestLimitsCheckType(t *testing.T) {
	l := event.DefaultLimits()
	valid := []struct {
		name, typ string
	}{
		{"SingleLetter", "a"},
		{"TwoTokens", "order.created"},
		{"AllCharClasses", "A-b_c.9"},
		{"AtLimit", strings.Repeat("a", 255)},
		{"TokensAtLimit", strings.Repeat("ab.", 84) + "abc"},
	}
	for _, tc := range valid {
		t.Run("OK/"+tc.name, func(t *testing.T) {
			if len(tc.typ) > l.MaxTypeBytes {
				t.Fatalf("test case is %d bytes, over the limit", len(tc.typ))
			}
			if err := l.CheckType(tc.typ); err != nil {
				t.Fatalf("CheckType(%q) = %v, want nil", tc.typ, err)
			}
		})
	}

	invalid := []struct {
		name, typ string
	}{
		{"Empty", ""},
		{"OverLimit", strings.Repeat("a", 256)},
		{"Space", "order created"},
		{"Tab", "order\tcreated"},
		{"ControlChar", "order\x01created"},
		{"NUL", "order\x00"},
		{"DEL", "order\x7f"},
		{"InvalidUTF8", "\xff"},
		{"InvalidUTF8InToken", "order.\xffcreated"},
		{"NonASCIILetter", "ordér"},
		{"EmptyMiddleToken", "a..b"},
		{"LeadingDot", ".a"},
		{"TrailingDot", "a."},
		{"OnlyDot", "."},
		{"Star", "*"},
		{"GreaterThan", ">"},
		{"StarToken", "order.*"},
		{"GreaterThanToken", "order.>"},
		{"Dollar", "$SYS.x"},
		{"Inbox", "_INBOX"},
		{"InboxToken", "_INBOX.x"},
		{"Slash", "order/created"},
		{"Colon", "order:created"},
	}
	for _, tc := range invalid {
		t.Run("ErrInvalid/"+tc.name, func(t *testing.T) {
			err := l.CheckType(tc.typ)
			if !errors.Is(err, event.ErrInvalid) {
				t.Fatalf("CheckType(%q) = %v, want an error wrapping ErrInvalid", tc.typ, err)
			}
		})
	}

	// "_INBOX" is reserved only as the whole first token.
	for _, typ := range []string{"_INBOXES", "x._INBOX", "_inbox.x"} {
		t.Run("OK/NotInbox/"+typ, func(t *testing.T) {
			if err := l.CheckType(typ); err != nil {
				t.Fatalf("CheckType(%q) = %v, want nil", typ, err)
			}
		})
	}
}

// validEvent returns an event that passes DefaultLimits.
func validEvent() *event.Event {
	return &event.Event{
		Type:           "order.created",
		Payload:        []byte(`{"id":1}`),
		Headers:        map[string]string{"Content-Type": "application/json", "X-Trace": "abc"},
		IdempotencyKey: "order-1",
	}
}

func TestLimitsCheck(t *testing.T) {
	l := event.DefaultLimits()

	manyHeaders := func(n int) map[string]string {
		h := make(map[string]string, n)
		for i := range n {
			h["X-H"+strings.Repeat("x", i)] = "v"
		}
		return h
	}

	ok := []struct {
		name   string
		modify func(e *event.Event)
	}{
		{"Default", func(*event.Event) {}},
		{"NoHeadersNoKeyNoPayload", func(e *event.Event) { e.Headers, e.IdempotencyKey, e.Payload = nil, "", nil }},
		{"PayloadAtLimit", func(e *event.Event) { e.Payload = make([]byte, l.MaxPayloadBytes) }},
		{"HeadersAtCount", func(e *event.Event) { e.Headers = manyHeaders(l.MaxHeaders) }},
		{"HeadersAtBytes", func(e *event.Event) {
			e.Headers = map[string]string{"X-Big": strings.Repeat("v", l.MaxHeaderBytes-len("X-Big"))}
		}},
		{"HeaderValueEmpty", func(e *event.Event) { e.Headers = map[string]string{"X-Empty": ""} }},
		{"HeaderValueUnicode", func(e *event.Event) { e.Headers = map[string]string{"X-Name": "Zoë ✓"} }},
		{"HeaderNameNatsInside", func(e *event.Event) { e.Headers = map[string]string{"X-Nats-Id": "1"} }},
		{"IdempotencyKeyAtLimit", func(e *event.Event) { e.IdempotencyKey = strings.Repeat("k", l.MaxIdempotencyKeyBytes) }},
		{"IdempotencyKeyUnicode", func(e *event.Event) { e.IdempotencyKey = "clé ✓" }},
		{"IdempotencyKeySpace", func(e *event.Event) { e.IdempotencyKey = "order 1" }},
	}
	for _, tc := range ok {
		t.Run("OK/"+tc.name, func(t *testing.T) {
			e := validEvent()
			tc.modify(e)
			if err := l.Check(e); err != nil {
				t.Fatalf("Check = %v, want nil", err)
			}
		})
	}

	invalid := []struct {
		name   string
		modify func(e *event.Event)
	}{
		{"BadType", func(e *event.Event) { e.Type = "order.*" }},
		{"EmptyType", func(e *event.Event) { e.Type = "" }},
		{"PayloadOverLimit", func(e *event.Event) { e.Payload = make([]byte, l.MaxPayloadBytes+1) }},
		{"TooManyHeaders", func(e *event.Event) { e.Headers = manyHeaders(l.MaxHeaders + 1) }},
		{"HeadersTooLarge", func(e *event.Event) {
			e.Headers = map[string]string{"X-Big": strings.Repeat("v", l.MaxHeaderBytes-len("X-Big")+1)}
		}},
		{"HeadersTooLargeInTotal", func(e *event.Event) {
			half := strings.Repeat("v", l.MaxHeaderBytes/2)
			e.Headers = map[string]string{"X-A": half, "X-B": half}
		}},
		{"HeaderNameEmpty", func(e *event.Event) { e.Headers = map[string]string{"": "v"} }},
		{"HeaderNameColon", func(e *event.Event) { e.Headers = map[string]string{"X:Y": "v"} }},
		{"HeaderNameSpace", func(e *event.Event) { e.Headers = map[string]string{"X Y": "v"} }},
		{"HeaderNameTab", func(e *event.Event) { e.Headers = map[string]string{"X\tY": "v"} }},
		{"HeaderNameNonASCII", func(e *event.Event) { e.Headers = map[string]string{"X-Clé": "v"} }},
		{"HeaderNameDEL", func(e *event.Event) { e.Headers = map[string]string{"X-\x7f": "v"} }},
		{"HeaderNatsMsgId", func(e *event.Event) { e.Headers = map[string]string{"Nats-Msg-Id": "v"} }},
		{"HeaderNatsExpectedStreamLower", func(e *event.Event) { e.Headers = map[string]string{"nats-expected-stream": "v"} }},
		{"HeaderNatsUpper", func(e *event.Event) { e.Headers = map[string]string{"NATS-ROLLUP": "v"} }},
		{"HeaderJsctl", func(e *event.Event) { e.Headers = map[string]string{"Jsctl-x": "v"} }},
		{"HeaderValueCRLF", func(e *event.Event) { e.Headers = map[string]string{"X-A": "a\r\nNats-Msg-Id: x"} }},
		{"HeaderValueLF", func(e *event.Event) { e.Headers = map[string]string{"X-A": "a\nb"} }},
		{"HeaderValueNUL", func(e *event.Event) { e.Headers = map[string]string{"X-A": "a\x00b"} }},
		{"HeaderValueInvalidUTF8", func(e *event.Event) { e.Headers = map[string]string{"X-A": "a\xffb"} }},
		{"IdempotencyKeyTooLong", func(e *event.Event) { e.IdempotencyKey = strings.Repeat("k", l.MaxIdempotencyKeyBytes+1) }},
		{"IdempotencyKeyControlChar", func(e *event.Event) { e.IdempotencyKey = "order\x01" }},
		{"IdempotencyKeyNewline", func(e *event.Event) { e.IdempotencyKey = "order\n1" }},
		{"IdempotencyKeyDEL", func(e *event.Event) { e.IdempotencyKey = "order\x7f" }},
		{"IdempotencyKeyInvalidUTF8", func(e *event.Event) { e.IdempotencyKey = "order\xff" }},
	}
	for _, tc := range invalid {
		t.Run("ErrInvalid/"+tc.name, func(t *testing.T) {
			e := validEvent()
			tc.modify(e)
			if err := l.Check(e); !errors.Is(err, event.ErrInvalid) {
				t.Fatalf("Check = %v, want an error wrapping ErrInvalid", err)
			}
		})
	}
}

func TestLimitsCheckMessages(t *testing.T) {
	// The messages are shown to clients: they must name the problem.
	l := event.DefaultLimits()
	tests := []struct {
		name   string
		modify func(e *event.Event)
		want   string
	}{
		{"PayloadOverLimit", func(e *event.Event) { e.Payload = make([]byte, l.MaxPayloadBytes+1) }, "payload"},
		{"ReservedHeader", func(e *event.Event) { e.Headers = map[string]string{"Nats-Msg-Id": "v"} }, `"Nats-"`},
		{"IdempotencyKey", func(e *event.Event) { e.IdempotencyKey = "\x01" }, "idempotency_key"},
		{"Type", func(e *event.Event) { e.Type = "a..b" }, "event_type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := validEvent()
			tc.modify(e)
			err := l.Check(e)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check = %v, want a message containing %q", err, tc.want)
			}
		})
	}
}
