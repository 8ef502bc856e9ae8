package rpc

import (
	"context"
	"errors"
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

// decodeCodec is the standard protobuf codec, except that a request it cannot
// decode (string fields that are not valid UTF-8, malformed wire data) reaches
// the handler chain as an InvalidArgument error instead of grpc-go's Internal
// "failed to unmarshal". Such a request is a client mistake; the codec cannot
// choose the code, so it resets the message, remembers it, and the
// interceptors answer for it.
type decodeCodec struct{ encoding.CodecV2 }

var (
	undecodable      sync.Map     // request message pointer -> error message
	undecodableCount atomic.Int64 // entries in undecodable, to skip the map when zero
)

func newDecodeCodec() decodeCodec { return decodeCodec{encoding.GetCodecV2(proto.Name)} }

func (c decodeCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(gproto.Message)
	if !ok {
		return err
	}
	msg := errInvalidUTF8.Error()
	if !strings.Contains(err.Error(), "invalid UTF-8") {
		msg = "invalid argument: request is not a valid " + string(m.ProtoReflect().Descriptor().FullName()) + " message (" + strings.TrimPrefix(err.Error(), "proto: ") + ")"
	}
	gproto.Reset(m)
	undecodable.Store(v, msg)
	undecodableCount.Add(1)
	return nil
}

// takeUndecodable returns the error for a request the codec could not decode,
// or nil.
func takeUndecodable(req any) error {
	if undecodableCount.Load() == 0 {
		return nil
	}
	if msg, ok := undecodable.LoadAndDelete(req); ok {
		undecodableCount.Add(-1)
		return status.Error(codes.InvalidArgument, msg.(string))
	}
	return nil
}

var errInvalidUTF8 = errors.New("invalid argument: request has a string field that is not valid UTF-8 (event_type, idempotency_key, headers and correlation_id must be UTF-8)")

func undecodableInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := takeUndecodable(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// undecodableStreamInterceptor does for streams what undecodableInterceptor
// does for unary calls, on every received message.
func undecodableStreamInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, decodeStream{ss})
}

type decodeStream struct{ grpc.ServerStream }

func (s decodeStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return takeUndecodable(m)
}
