package rpc

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jsctl/jsctl/event"
)

// codeOf is the one table from domain errors to gRPC codes.
var codeOf = []struct {
	err  error
	code codes.Code
}{
	{event.ErrInvalid, codes.InvalidArgument},
	{event.ErrNotFound, codes.NotFound},
	{event.ErrConflict, codes.AlreadyExists},
	{event.ErrPrecondition, codes.FailedPrecondition},
	{event.ErrFull, codes.ResourceExhausted},
	{event.ErrUnavailable, codes.Unavailable},
	{event.ErrLocked, codes.Unavailable},
}

// toStatus converts err for the client. Errors of unknown cause are logged
// and reported as Internal without details.
func toStatus(log *slog.Logger, method string, err error) error {
	for _, c := range codeOf {
		if errors.Is(err, c.err) {
			return status.Error(c.code, err.Error())
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return status.FromContextError(err).Err()
	}
	log.Error("internal error", "method", method, "err", err)
	return status.Error(codes.Internal, "internal error")
}
