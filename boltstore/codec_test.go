package boltstore

import (
	"bytes"
	"encoding/binary"
	"maps"
	"reflect"
	"testing"
	"time"

	"github.com/jsctl/jsctl/event"
)

func codecEvent(t *testing.T) *event.Event {
	t.Helper()
	id, err := event.NewID()
	if err != nil {
		t.Fatal(err)
	}
	return &event.Event{
		ID:             id,
		Type:           "order.created",
		Payload:        []byte(`{"id":42,"bin":"\x00\xff"}`),
		Headers:        map[string]string{"Content-Type": "application/json", "X-Empty": "", "X-Unicode": "Zoë ✓"},
		IdempotencyKey: "order-42",
		CreatedAt:      time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.FixedZone("CET", 3600)),
	}
}

func TestBodyCodec(t *testing.T) {
	tests := []struct {
		name   string
		modify func(e *event.Event)
	}{
		{"Full", func(*event.Event) {}},
		{"Empty", func(e *event.Event) { e.Payload, e.Headers, e.IdempotencyKey = nil, nil, "" }},
		{"LargePayload", func(e *event.Event) { e.Payload = bytes.Repeat([]byte{0xab}, 1<<20) }},
		{"LongStrings", func(e *event.Event) {
			e.Type = string(bytes.Repeat([]byte("t"), 255))
			e.IdempotencyKey = string(bytes.Repeat([]byte("k"), 300)) // length needs two varint bytes
			e.Headers = map[string]string{"X-Long": string(bytes.Repeat([]byte("v"), 16<<10))}
		}},
		{"BeforeEpoch", func(e *event.Event) { e.CreatedAt = time.Date(1969, 7, 20, 20, 17, 40, 1, time.UTC) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := codecEvent(t)
			tc.modify(want)
			buf := encodeBody(nil, want)
			if n := bodySize(want); len(buf) > n {
				t.Errorf("encoded body is %d bytes, bodySize said %d", len(buf), n)
			}

			got := &event.Event{}
			if err := decodeBody(buf, got, true); err != nil {
				t.Fatalf("decodeBody: %v", err)
			}
			if got.Type != want.Type || got.IdempotencyKey != want.IdempotencyKey {
				t.Errorf("decoded type %q key %q, want %q %q", got.Type, got.IdempotencyKey, want.Type, want.IdempotencyKey)
			}
			if !bytes.Equal(got.Payload, want.Payload) {
				t.Errorf("decoded payload %q, want %q", got.Payload, want.Payload)
			}
			if !maps.Equal(got.Headers, want.Headers) {
				t.Errorf("decoded headers %v, want %v", got.Headers, want.Headers)
			}
			if !got.CreatedAt.Equal(want.CreatedAt) || got.CreatedAt.Location() != time.UTC {
				t.Errorf("decoded CreatedAt %v, want %v in UTC", got.CreatedAt, want.CreatedAt)
			}

			noPayload := &event.Event{}
			if err := decodeBody(buf, noPayload, false); err != nil {
				t.Fatalf("decodeBody without payload: %v", err)
			}
			if noPayload.Payload != nil || noPayload.Type != want.Type || !maps.Equal(noPayload.Headers, want.Headers) {
				t.Errorf("decodeBody without payload = %+v", noPayload)
			}
		})
	}

	t.Run("CopiesInput", func(t *testing.T) {
		want := codecEvent(t)
		buf := encodeBody(nil, want)
		got := &event.Event{}
		if err := decodeBody(buf, got, true); err != nil {
			t.Fatal(err)
		}
		clear(buf) // bbolt reuses its memory after the transaction
		if !bytes.Equal(got.Payload, want.Payload) || got.Type != want.Type || got.Headers["X-Unicode"] != "Zoë ✓" {
			t.Errorf("decoded event changed with its input: %+v", got)
		}
	})

	t.Run("AppendsToBuffer", func(t *testing.T) {
		e := codecEvent(t)
		buf := encodeBody([]byte("prefix"), e)
		if !bytes.HasPrefix(buf, []byte("prefix")) {
			t.Fatalf("encodeBody overwrote the buffer: %q", buf[:6])
		}
		if err := decodeBody(buf[len("prefix"):], &event.Event{}, true); err != nil {
			t.Fatalf("decodeBody: %v", err)
		}
	})

	t.Run("WrongVersion", func(t *testing.T) {
		buf := encodeBody(nil, codecEvent(t))
		buf[0] = bodyVersion + 1
		if err := decodeBody(buf, &event.Event{}, true); err == nil {
			t.Fatal("decodeBody accepted an unknown version")
		}
	})
}

// bodyPayloadOffset returns where the payload starts in an encoded body.
func bodyPayloadOffset(e *event.Event) int {
	return len(encodeBody(nil, e)) - len(e.Payload)
}

func TestDecodeBodyTruncated(t *testing.T) {
	e := codecEvent(t)
	buf := encodeBody(nil, e)
	payloadAt := bodyPayloadOffset(e)
	for n := range len(buf) {
		got := &event.Event{}
		err := decodeBody(buf[:n:n], got, true)
		if n < payloadAt {
			if err == nil {
				t.Errorf("decodeBody of the first %d of %d bytes (before the payload) succeeded: %+v", n, len(buf), got)
			}
			continue
		}
		// The payload is the rest of the record, with no length of its own:
		// a record cut inside the payload decodes to a shorter payload.
		if err != nil {
			t.Errorf("decodeBody of the first %d bytes (inside the payload): %v", n, err)
		} else if !bytes.Equal(got.Payload, e.Payload[:n-payloadAt]) {
			t.Errorf("decodeBody of the first %d bytes: payload %q, want %q", n, got.Payload, e.Payload[:n-payloadAt])
		}
	}
}

func codecState() *state {
	at := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)
	return &state{
		Status:   event.StatusFailed,
		Sequence: 1 << 40,
		History: []event.Transition{
			{From: event.StatusAccepted, To: event.StatusPublished, Time: at, Sequence: 300},
			{From: event.StatusPublished, To: event.StatusPublished, Time: at.Add(time.Second), Reason: "republished: stream ended at sequence 299 after restart", Sequence: 1 << 40},
			{From: event.StatusPublished, To: event.StatusFailed, Time: at.Add(time.Minute), Group: "billing", Reason: "handler: boom ✗", Deliveries: 5},
		},
		Groups: []event.GroupStatus{
			{Group: "billing", Status: event.StatusFailed, Deliveries: 5, LastReason: "handler: boom ✗", UpdatedAt: at.Add(time.Minute)},
			{Group: "audit", Status: event.StatusProcessed, Deliveries: 1, UpdatedAt: at.Add(-time.Hour)},
		},
		FinishedAt:     at.Add(time.Minute + time.Millisecond),
		PayloadDropped: true,
	}
}

func TestStateCodec(t *testing.T) {
	tests := []struct {
		name string
		st   *state
	}{
		{"Full", codecState()},
		{"Published", &state{Status: event.StatusPublished, Sequence: 7, History: []event.Transition{
			{From: event.StatusAccepted, To: event.StatusPublished, Time: time.Unix(1700000000, 5).UTC(), Sequence: 7},
		}}},
		{"Empty", &state{Status: event.StatusAccepted}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			buf := encodeState(nil, tc.st)
			got, err := decodeState(buf)
			if err != nil {
				t.Fatalf("decodeState: %v", err)
			}
			// Times come back in UTC without a monotonic reading, so the
			// inputs above are UTC and reflect.DeepEqual applies.
			if !reflect.DeepEqual(got, tc.st) {
				t.Errorf("decodeState(encodeState(s)) =\n%+v\nwant\n%+v", got, tc.st)
			}
		})
	}

	t.Run("Version1", func(t *testing.T) {
		// A version 1 record is version 2 without the finished time and
		// flags at the end; it decodes with both zero.
		want := codecState()
		v1 := encodeStateV1(want)
		want.FinishedAt, want.PayloadDropped = time.Time{}, false
		got, err := decodeState(v1)
		if err != nil {
			t.Fatalf("decodeState of a version 1 record: %v", err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("decodeState(version 1) =\n%+v\nwant\n%+v", got, want)
		}
	})

	t.Run("WrongVersion", func(t *testing.T) {
		buf := encodeState(nil, codecState())
		buf[0] = stateVersion + 1
		if _, err := decodeState(buf); err == nil {
			t.Fatal("decodeState accepted an unknown version")
		}
	})

	t.Run("HugeCounts", func(t *testing.T) {
		// A damaged count must not make the decoder allocate or loop for it.
		buf := []byte{stateVersion, byte(event.StatusPublished), 7}
		buf = binary.AppendUvarint(buf, 1<<62)
		if _, err := decodeState(buf); err == nil {
			t.Fatal("decodeState accepted 2^62 history entries in a few bytes")
		}
	})
}

// encodeStateV1 encodes st as a version 1 record, which is version 2
// without the finished time and flags at the end.
func encodeStateV1(st *state) []byte {
	v1 := *st
	v1.FinishedAt, v1.PayloadDropped = time.Time{}, false
	b := encodeState(nil, &v1)
	b = b[:len(b)-2] // a zero varint and a zero flags byte
	b[0] = 1
	return b
}

func TestDecodeStateTruncated(t *testing.T) {
	buf := encodeState(nil, codecState())
	for n := range len(buf) {
		if st, err := decodeState(buf[:n:n]); err == nil {
			t.Errorf("decodeState of the first %d of %d bytes succeeded: %+v", n, len(buf), st)
		}
	}
}

// The fuzz targets run their seeds in every go test; go test -fuzz explores more.

func FuzzDecodeBody(f *testing.F) {
	id, _ := event.NewID()
	e := &event.Event{ID: id, Type: "a.b", Payload: []byte("p"), Headers: map[string]string{"k": "v"}, IdempotencyKey: "key", CreatedAt: time.Unix(1, 2)}
	f.Add(encodeBody(nil, e))
	f.Add([]byte{bodyVersion})
	f.Add([]byte{bodyVersion, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e event.Event
		_ = decodeBody(b, &e, true) // must not panic
	})
}

func FuzzDecodeState(f *testing.F) {
	f.Add(encodeState(nil, &state{Status: event.StatusPublished, Sequence: 3, History: []event.Transition{{To: event.StatusPublished, Time: time.Unix(1, 2), Reason: "r"}}}))
	f.Add([]byte{stateVersion, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Add([]byte{1, byte(event.StatusProcessed), 3, 0, 0}) // version 1
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState(b)
		if err != nil {
			return
		}
		// What decodes must encode and decode to the same state.
		again, err := decodeState(encodeState(nil, st))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(again, st) {
			t.Fatalf("re-decode = %+v, want %+v", again, st)
		}
	})
}
