package event_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jsctl/jsctl/event"
)

// FuzzCheckType: no input panics; every rejection wraps ErrInvalid; every
// accepted type is 1-255 bytes of ASCII letters, digits, '-', '_' in
// non-empty dot-separated tokens, and not _INBOX.
// Long run: go test ./event -run '^$' -fuzz FuzzCheckType -fuzztime 5m
func FuzzCheckType(f *testing.F) {
	for _, s := range []string{"order.created", "a", "", "a..b", "*", ">", "$SYS.x", "_INBOX.x", "order created", "\xff", "a.b.c-d_e", strings.Repeat("a", 256)} {
		f.Add(s)
	}
	l := event.DefaultLimits()
	f.Fuzz(func(t *testing.T, s string) {
		err := l.CheckType(s)
		if err != nil {
			if !errors.Is(err, event.ErrInvalid) {
				t.Fatalf("CheckType(%q) = %v, not ErrInvalid", s, err)
			}
			return
		}
		if s == "" || len(s) > 255 || !utf8.ValidString(s) {
			t.Fatalf("accepted %q", s)
		}
		for _, tok := range strings.Split(s, ".") {
			if tok == "" {
				t.Fatalf("accepted %q with an empty token", s)
			}
			for _, c := range tok {
				if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
					t.Fatalf("accepted %q with %q", s, c)
				}
			}
		}
		if strings.HasPrefix(s, "_INBOX") && (len(s) == 6 || s[6] == '.') {
			t.Fatalf("accepted %q", s)
		}
	})
}

// FuzzParseID: no input panics; what parses prints back the same (lower case).
func FuzzParseID(f *testing.F) {
	id, _ := event.NewID()
	for _, s := range []string{id.String(), "", "nope", "6ba7b810-9dad-41d1-80b4-00c04fd430c8", strings.ToUpper(id.String())} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := event.ParseID(s)
		if err != nil {
			if !errors.Is(err, event.ErrInvalid) {
				t.Fatalf("ParseID(%q) = %v, not ErrInvalid", s, err)
			}
			return
		}
		if id.String() != strings.ToLower(s) {
			t.Fatalf("ParseID(%q).String() = %q", s, id.String())
		}
	})
}
