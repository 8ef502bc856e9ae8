package rpc

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	gproto "google.golang.org/protobuf/proto"
)

// utf8Codec is the standard protobuf codec, except that a request whose string
// fields are not valid UTF-8 reaches the handler chain as an InvalidArgument
// error instead of grpc-go's Internal "failed to unmarshal". Such a request is a
// client mistake; the codec cannot choose the code, so it resets the message,
// remembers it, and invalidUTF8Interceptor answers for it.
type utf8Codec struct{ encoding.CodecV2 }

var (
	invalidUTF8      sync.Map     // request message pointer -> struct{}
	invalidUTF8Count atomic.Int64 // entries in invalidUTF8, to skip the map when zero
)

func newUTF8Codec() utf8Codec { return utf8Codec{encoding.GetCodecV2(proto.Name)} }

func (c utf8Codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	if err == nil || !strings.Contains(err.Error(), "invalid UTF-8") {
		return err
	}
	m, ok := v.(gproto.Message)
	if !ok {
		return err
	}
	gproto.Reset(m)
	invalidUTF8.Store(v, struct{}{})
	invalidUTF8Count.Add(1)
	return nil
}

func takeInvalidUTF8(req any) bool {
	if invalidUTF8Count.Load() == 0 {
		return false
	}
	if _, ok := invalidUTF8.LoadAndDelete(req); ok {
		invalidUTF8Count.Add(-1)
		return true
	}
	return false
}

var errInvalidUTF8 = status.Error(codes.InvalidArgument,
	"invalid argument: request has a string field that is not valid UTF-8 (event_type, idempotency_key, headers and correlation_id must be UTF-8)")

func invalidUTF8Interceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if takeInvalidUTF8(req) {
		return nil, errInvalidUTF8
	}
	return handler(ctx, req)
}

// invalidUTF8StreamInterceptor does for streams what invalidUTF8Interceptor
// does for unary calls, on every received message.
func invalidUTF8StreamInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, utf8Stream{ss})
}

type utf8Stream struct{ grpc.ServerStream }

func (s utf8Stream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if takeInvalidUTF8(m) {
		return errInvalidUTF8
	}
	return nil
}
