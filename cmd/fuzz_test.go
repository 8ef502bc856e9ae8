package cmd

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// fuzzApp is one app shared by the fuzz targets' inputs.
var fuzzApp struct {
	once sync.Once
	cc   *grpc.ClientConn
}

func fuzzConn(f *testing.F) *grpc.ClientConn {
	fuzzApp.once.Do(func() {
		cfg := DefaultConfig()
		cfg.DataDir = f.TempDir()
		cfg.GRPC.Listen = "127.0.0.1:0"
		cfg.HTTP.Listen = ""
		a := NewApp(cfg, testLogger())
		if err := a.Open(context.Background()); err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { a.Close() })
		_, fuzzApp.cc = dialApp(f, a)
	})
	return fuzzApp.cc
}

// fuzzRaw sends raw bytes as the request of method: whatever they are, the
// answer is never INTERNAL or UNKNOWN, and the server keeps working.
func fuzzRaw(t *testing.T, cc *grpc.ClientConn, method string, raw []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var resp emptypb.Empty
	err := cc.Invoke(ctx, "/controller.v1.Controller/"+method, rawMessage(raw), &resp, grpc.ForceCodecV2(rawCodec{}))
	if code := statusCode(err); code == codes.Internal || code == codes.Unknown {
		t.Fatalf("%s(%x) = %v", method, raw, err)
	}
}

func marshal(m proto.Message) []byte {
	b, _ := proto.Marshal(m)
	return b
}

// FuzzNewEvent sends arbitrary bytes as NewEventRequest.
// Long run: go test ./cmd -run '^$' -fuzz FuzzNewEvent -fuzztime 10m
func FuzzNewEvent(f *testing.F) {
	f.Add(marshal(&pb.NewEventRequest{EventType: "order.created", Payload: []byte("{}")}))
	f.Add(marshal(&pb.NewEventRequest{EventType: "a", Headers: map[string]string{"k": "v"}, IdempotencyKey: "key"}))
	f.Add(marshal(&pb.NewEventRequest{EventType: "a..b"}))
	f.Add(protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("\xff")))
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Add([]byte{})
	cc := fuzzConn(f)
	f.Fuzz(func(t *testing.T, raw []byte) { fuzzRaw(t, cc, "NewEvent", raw) })
}

// FuzzEventStatus sends arbitrary bytes as EventStatusRequest.
// Long run: go test ./cmd -run '^$' -fuzz FuzzEventStatus -fuzztime 10m
func FuzzEventStatus(f *testing.F) {
	f.Add(marshal(&pb.EventStatusRequest{CorrelationId: "01900000-0000-7000-8000-000000000000"}))
	f.Add(marshal(&pb.EventStatusRequest{CorrelationId: "nope", IncludePayload: true}))
	f.Add(protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("\xfe")))
	f.Add([]byte{0x08, 0x80})
	cc := fuzzConn(f)
	f.Fuzz(func(t *testing.T, raw []byte) { fuzzRaw(t, cc, "EventStatus", raw) })
}
