package cmd

import (
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// rawMessage is an already encoded protobuf message.
type rawMessage []byte

// rawCodec sends rawMessage bytes as they are and decodes replies as protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(rawMessage))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

func (rawCodec) Name() string { return "proto" }

// rawHeader encodes a NewEventRequest with event type "a" and one header.
func rawHeader(k, v []byte) []byte {
	var entry []byte
	entry = protowire.AppendBytes(protowire.AppendTag(entry, 1, protowire.BytesType), k)
	entry = protowire.AppendBytes(protowire.AppendTag(entry, 2, protowire.BytesType), v)
	b := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("a"))
	return protowire.AppendBytes(protowire.AppendTag(b, 3, protowire.BytesType), entry)
}

// TestBadInput sends every kind of bad request through real gRPC and checks the
// code; after each one, a good call on the same connection must succeed.
func TestBadInput(t *testing.T) {
	a := startApp(t, testConfig(t, t.TempDir()))
	c, _ := dialApp(t, a)
	good := publish(t, c, &pb.NewEventRequest{EventType: "order.created", Payload: []byte("x")})
	unknownID := "01900000-0000-7000-8000-000000000000"

	many := map[string]string{}
	for i := range 33 {
		many[strings.Repeat("h", i+1)] = "v"
	}
	type newCase struct {
		name string
		req  *pb.NewEventRequest
		code codes.Code
	}
	ev := func(typ string) *pb.NewEventRequest { return &pb.NewEventRequest{EventType: typ, Payload: []byte("p")} }
	newCases := []newCase{
		{"EmptyType", ev(""), codes.InvalidArgument},
		{"TypeTooLong", ev(strings.Repeat("a", 256)), codes.InvalidArgument},
		{"TypeWithSpace", ev("order created"), codes.InvalidArgument},
		{"TypeWithTab", ev("order\tcreated"), codes.InvalidArgument},
		{"TypeWithNewline", ev("order.created\n"), codes.InvalidArgument},
		{"TypeWithNUL", ev("order\x00created"), codes.InvalidArgument},
		{"TypeNonASCII", ev("ordér.created"), codes.InvalidArgument},
		{"TypeEmptyToken", ev("a..b"), codes.InvalidArgument},
		{"TypeLeadingDot", ev(".order"), codes.InvalidArgument},
		{"TypeTrailingDot", ev("order."), codes.InvalidArgument},
		{"TypeStar", ev("*"), codes.InvalidArgument},
		{"TypeGreater", ev(">"), codes.InvalidArgument},
		{"TypeWildcardToken", ev("order.*"), codes.InvalidArgument},
		{"TypeFullWildcard", ev("order.>"), codes.InvalidArgument},
		{"TypeDollar", ev("$SYS.x"), codes.InvalidArgument},
		{"TypeInbox", ev("_INBOX.abc"), codes.InvalidArgument},
		{"PayloadOverLimit", &pb.NewEventRequest{EventType: "a", Payload: make([]byte, 1<<20+1)}, codes.InvalidArgument},
		{"MessageOverGRPCLimit", &pb.NewEventRequest{EventType: "a", Payload: make([]byte, 2<<20)}, codes.ResourceExhausted},
		{"TooManyHeaders", &pb.NewEventRequest{EventType: "a", Headers: many}, codes.InvalidArgument},
		{"HeadersTooLarge", &pb.NewEventRequest{EventType: "a", Headers: map[string]string{"big": strings.Repeat("v", 16<<10)}}, codes.InvalidArgument},
		{"HeaderNameWithColon", &pb.NewEventRequest{EventType: "a", Headers: map[string]string{"a:b": "v"}}, codes.InvalidArgument},
		{"HeaderNameEmpty", &pb.NewEventRequest{EventType: "a", Headers: map[string]string{"": "v"}}, codes.InvalidArgument},
		{"HeaderReservedNats", &pb.NewEventRequest{EventType: "a", Headers: map[string]string{"Nats-Msg-Id": "x"}}, codes.InvalidArgument},
		{"HeaderReservedExpected", &pb.NewEventRequest{EventType: "a", Headers: map[string]string{"Nats-Expected-Stream": "OTHER"}}, codes.InvalidArgument},
		{"HeaderValueCRLF", &pb.NewEventRequest{EventType: "a", Headers: map[string]string{"x": "a\r\nb"}}, codes.InvalidArgument},
		{"IdempotencyKeyTooLong", &pb.NewEventRequest{EventType: "a", IdempotencyKey: strings.Repeat("k", 257)}, codes.InvalidArgument},
		{"IdempotencyKeyControl", &pb.NewEventRequest{EventType: "a", IdempotencyKey: "k\x01"}, codes.InvalidArgument},
	}
	for _, tc := range newCases {
		t.Run("NewEvent/"+tc.name, func(t *testing.T) {
			_, err := c.NewEvent(ctxT(t), tc.req)
			if got := status.Code(err); got != tc.code {
				t.Fatalf("code %v (%v), want %v", got, err, tc.code)
			}
			publish(t, c, &pb.NewEventRequest{EventType: "order.created", Payload: []byte("after " + tc.name)})
		})
	}

	statusCases := []struct {
		name string
		id   string
		code codes.Code
	}{
		{"EmptyID", "", codes.InvalidArgument},
		{"MalformedID", "nope", codes.InvalidArgument},
		{"IDWithSpaces", strings.Repeat(" ", 36), codes.InvalidArgument},
		{"IDNotHex", "0190000z-0000-7000-8000-000000000000", codes.InvalidArgument},
		{"IDVersion4", "6ba7b810-9dad-41d1-80b4-00c04fd430c8", codes.InvalidArgument},
		{"IDTooLong", strings.Repeat("0", 10000), codes.InvalidArgument},
		{"UnknownID", unknownID, codes.NotFound},
	}
	for _, tc := range statusCases {
		t.Run("EventStatus/"+tc.name, func(t *testing.T) {
			_, err := c.EventStatus(ctxT(t), &pb.EventStatusRequest{CorrelationId: tc.id})
			if got := status.Code(err); got != tc.code {
				t.Fatalf("code %v (%v), want %v", got, err, tc.code)
			}
			if st := getStatus(t, c, good.GetCorrelationId()); st.GetStatus() != pb.Status_STATUS_PUBLISHED {
				t.Fatalf("good event after bad call: %v", st.GetStatus())
			}
		})
	}
	// Go clients refuse to send invalid UTF-8 in string fields; clients in
	// other languages may not, so send the raw bytes.
	rawCases := []struct {
		name   string
		method string
		msg    []byte
	}{
		{"NewEvent/TypeInvalidUTF8", "NewEvent", protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("order.\xffcreated"))},
		{"NewEvent/HeaderValueInvalidUTF8", "NewEvent", rawHeader([]byte("x"), []byte("\xff"))},
		{"NewEvent/IdempotencyKeyInvalidUTF8", "NewEvent", append(protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("a")),
			protowire.AppendBytes(protowire.AppendTag(nil, 4, protowire.BytesType), []byte("k\xfe"))...)},
		{"EventStatus/IDInvalidUTF8", "EventStatus", protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("\xff\xfe"))},
	}
	_, cc := dialApp(t, a)
	for _, tc := range rawCases {
		t.Run(tc.name, func(t *testing.T) {
			var resp emptypb.Empty
			err := cc.Invoke(ctxT(t), "/controller.v1.Controller/"+tc.method, rawMessage(tc.msg), &resp, grpc.ForceCodecV2(rawCodec{}))
			if got := status.Code(err); got != codes.InvalidArgument {
				t.Fatalf("code %v (%v), want InvalidArgument", got, err)
			}
			publish(t, c, &pb.NewEventRequest{EventType: "order.created", Payload: []byte("after " + tc.name)})
		})
	}
	if n := len(newCases) + len(statusCases) + len(rawCases); n < 25 {
		t.Fatalf("only %d cases", n)
	}
	// Nothing bad was stored: only the first good event and one after each
	// NewEvent and raw case.
	if want, ids := 1+len(newCases)+len(rawCases), streamMsgIDs(t, a); len(ids) != want {
		t.Fatalf("stream has %d messages, want %d", len(ids), want)
	}
}
