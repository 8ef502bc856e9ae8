package cmd

import (
	"testing"

	"google.golang.org/grpc/codes"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
)

// TestRateLimit: beyond the per-client rate, calls get RESOURCE_EXHAUSTED;
// health checks are not limited.
func TestRateLimit(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.GRPC.RateLimit, cfg.GRPC.RateBurst = 1, 5
	a := startApp(t, cfg)
	c, _ := dialApp(t, a)
	limited := 0
	for range 20 {
		_, err := c.EventStatus(ctxT(t), &pb.EventStatusRequest{CorrelationId: "01900000-0000-7000-8000-000000000000"})
		switch statusCode(err) {
		case codes.ResourceExhausted:
			limited++
		case codes.NotFound:
		default:
			t.Fatalf("unexpected %v", err)
		}
	}
	if limited < 10 {
		t.Fatalf("%d of 20 calls limited at 1/s with a burst of 5", limited)
	}
	if code, _, errOut := runCLI(t, "", "health", "--addr", a.GRPCAddr()); code != 0 {
		t.Fatalf("health was rate limited: %s", errOut)
	}
}
