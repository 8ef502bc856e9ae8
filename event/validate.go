package event

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits bound what one event may carry. The zero value is not useful; start
// from DefaultLimits.
type Limits struct {
	MaxTypeBytes           int // event type length; default 255
	MaxPayloadBytes        int // payload size; default 1 MiB
	MaxHeaders             int // number of headers; default 32
	MaxHeaderBytes         int // names plus values, all headers; default 16 KiB
	MaxIdempotencyKeyBytes int // idempotency key length; default 256
}

// DefaultLimits returns the limits jsctl uses unless configured otherwise.
func DefaultLimits() Limits {
	return Limits{
		MaxTypeBytes:           255,
		MaxPayloadBytes:        1 << 20,
		MaxHeaders:             32,
		MaxHeaderBytes:         16 << 10,
		MaxIdempotencyKeyBytes: 256,
	}
}

// reservedHeaderPrefixes are header name prefixes that carry meaning to NATS or
// jsctl and therefore cannot be set by producers (a "Nats-Expected-Stream"
// header, say, would change how JetStream stores the message).
var reservedHeaderPrefixes = []string{"nats-", "jsctl-"}

// Check returns an error wrapping ErrInvalid if e breaks a limit or a rule.
func (l Limits) Check(e *Event) error {
	if err := l.CheckType(e.Type); err != nil {
		return err
	}
	if len(e.Payload) > l.MaxPayloadBytes {
		return fmt.Errorf("%w: payload is %d bytes, over the limit of %d", ErrInvalid, len(e.Payload), l.MaxPayloadBytes)
	}
	if err := l.checkHeaders(e.Headers); err != nil {
		return err
	}
	return l.checkIdempotencyKey(e.IdempotencyKey)
}

// CheckType returns an error wrapping ErrInvalid unless t is a valid event type:
// dot-separated tokens of ASCII letters, digits, '-' and '_', no empty token, at
// most MaxTypeBytes, and not starting with "_INBOX". Wildcards ('*', '>'),
// '$', spaces and control characters are rejected by the character rule.
func (l Limits) CheckType(t string) error {
	switch {
	case t == "":
		return fmt.Errorf("%w: event_type is empty", ErrInvalid)
	case len(t) > l.MaxTypeBytes:
		return fmt.Errorf("%w: event_type is %d bytes, over the limit of %d", ErrInvalid, len(t), l.MaxTypeBytes)
	case !utf8.ValidString(t):
		return fmt.Errorf("%w: event_type is not valid UTF-8", ErrInvalid)
	}
	start := 0
	for i := 0; i <= len(t); i++ {
		if i == len(t) || t[i] == '.' {
			if i == start {
				return fmt.Errorf("%w: event_type %q has an empty token (at byte %d); use tokens like order.created", ErrInvalid, t, i)
			}
			start = i + 1
			continue
		}
		if !typeChar(t[i]) {
			return fmt.Errorf("%w: event_type %q has %q at byte %d; allowed are letters, digits, '-', '_' and '.' between tokens", ErrInvalid, t, rune(t[i]), i)
		}
	}
	if first, _, _ := strings.Cut(t, "."); first == "_INBOX" {
		return fmt.Errorf("%w: event_type %q: _INBOX is reserved for replies", ErrInvalid, t)
	}
	return nil
}

func typeChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func (l Limits) checkHeaders(h map[string]string) error {
	if len(h) > l.MaxHeaders {
		return fmt.Errorf("%w: %d headers, over the limit of %d", ErrInvalid, len(h), l.MaxHeaders)
	}
	total := 0
	for k, v := range h {
		if k == "" {
			return fmt.Errorf("%w: header name is empty", ErrInvalid)
		}
		for i := 0; i < len(k); i++ {
			if c := k[i]; c <= ' ' || c >= 0x7f || c == ':' {
				return fmt.Errorf("%w: header name %.64q has %q at byte %d; names are printable ASCII without ':' or spaces", ErrInvalid, k, rune(c), i)
			}
		}
		lower := strings.ToLower(k)
		for _, p := range reservedHeaderPrefixes {
			if strings.HasPrefix(lower, p) {
				return fmt.Errorf("%w: header name %q: the prefix %q is reserved", ErrInvalid, k, k[:len(p)])
			}
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("%w: header %q: value is not valid UTF-8", ErrInvalid, k)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return fmt.Errorf("%w: header %q: value contains CR, LF or NUL", ErrInvalid, k)
		}
		total += len(k) + len(v)
	}
	if total > l.MaxHeaderBytes {
		return fmt.Errorf("%w: headers are %d bytes, over the limit of %d", ErrInvalid, total, l.MaxHeaderBytes)
	}
	return nil
}

func (l Limits) checkIdempotencyKey(k string) error {
	if len(k) > l.MaxIdempotencyKeyBytes {
		return fmt.Errorf("%w: idempotency_key is %d bytes, over the limit of %d", ErrInvalid, len(k), l.MaxIdempotencyKeyBytes)
	}
	if !utf8.ValidString(k) {
		return fmt.Errorf("%w: idempotency_key is not valid UTF-8", ErrInvalid)
	}
	for _, r := range k {
		if r < ' ' || r == 0x7f {
			return fmt.Errorf("%w: idempotency_key contains control character %U", ErrInvalid, r)
		}
	}
	return nil
}
