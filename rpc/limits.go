package rpc

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// rateLimiter allows each client (its token's hash when auth is on, else its
// IP address) a number of calls per second; beyond it, RESOURCE_EXHAUSTED.
// Health checks are not limited.
type rateLimiter struct {
	perSecond rate.Limit
	burst     int

	mu      sync.Mutex
	clients map[string]*rate.Limiter
}

func newRateLimiter(perSecond float64, burst int) *rateLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &rateLimiter{perSecond: rate.Limit(perSecond), burst: max(burst, 1), clients: map[string]*rate.Limiter{}}
}

func (r *rateLimiter) allow(ctx context.Context, method string) error {
	if r == nil || len(method) > 22 && method[:23] == "/grpc.health.v1.Health/" {
		return nil
	}
	key := clientKey(ctx)
	r.mu.Lock()
	l, ok := r.clients[key]
	if !ok {
		if len(r.clients) > 100_000 {
			clear(r.clients) // bounded memory; limits restart for everyone
		}
		l = rate.NewLimiter(r.perSecond, r.burst)
		r.clients[key] = l
	}
	r.mu.Unlock()
	if !l.Allow() {
		return status.Errorf(codes.ResourceExhausted, "resource exhausted: over the rate limit of %g calls per second; retry later", float64(r.perSecond))
	}
	return nil
}

// clientKey names the caller for rate limiting: the token's hash, else the
// peer's IP address.
func clientKey(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			return "token:" + HashToken(v[0])
		}
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			return "ip:" + host
		}
		return "addr:" + p.Addr.String()
	}
	return "unknown"
}

func (r *rateLimiter) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := r.allow(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (r *rateLimiter) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := r.allow(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

// logCalls writes one debug line per call: method, code, duration, and the
// correlation ID when the call has one. Nothing is logged at info level.
func (s *Server) logCalls(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !s.log.Enabled(ctx, slog.LevelDebug) {
		return handler(ctx, req)
	}
	start := time.Now()
	resp, err := handler(ctx, req)
	attrs := []any{"method", info.FullMethod, "code", status.Code(err).String(), "took", time.Since(start)}
	switch r := req.(type) {
	case *pb.EventStatusRequest:
		attrs = append(attrs, "correlation_id", r.GetCorrelationId())
	case *pb.RedriveRequest:
		attrs = append(attrs, "correlation_id", r.GetCorrelationId())
	}
	if r, ok := resp.(*pb.NewEventResponse); ok {
		attrs = append(attrs, "correlation_id", r.GetEvent().GetCorrelationId())
	}
	s.log.Debug("grpc call", attrs...)
	return resp, err
}
