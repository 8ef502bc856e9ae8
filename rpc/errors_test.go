package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jsctl/jsctl/event"
)

func TestToStatus(t *testing.T) {
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&logged, nil))
	cases := []struct {
		name string
		err  error
		code codes.Code
	}{
		{"Invalid", fmt.Errorf("%w: event_type is empty", event.ErrInvalid), codes.InvalidArgument},
		{"NotFound", fmt.Errorf("%w: no event", event.ErrNotFound), codes.NotFound},
		{"Conflict", fmt.Errorf("%w: key reused", event.ErrConflict), codes.AlreadyExists},
		{"Full", fmt.Errorf("%w: disk", event.ErrFull), codes.ResourceExhausted},
		{"Unavailable", fmt.Errorf("%w: closing", event.ErrUnavailable), codes.Unavailable},
		{"Deadline", context.DeadlineExceeded, codes.DeadlineExceeded},
		{"Canceled", fmt.Errorf("wait: %w", context.Canceled), codes.Canceled},
		{"Internal", errors.New("disk controller on fire at 0xdeadbeef"), codes.Internal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := status.Convert(toStatus(log, "NewEvent", tc.err))
			if st.Code() != tc.code {
				t.Fatalf("code %v, want %v", st.Code(), tc.code)
			}
			if tc.code == codes.Internal {
				if strings.Contains(st.Message(), "0xdeadbeef") {
					t.Fatalf("internal details leaked to the client: %q", st.Message())
				}
				if !strings.Contains(logged.String(), "0xdeadbeef") {
					t.Fatal("internal error was not logged")
				}
			} else if tc.code != codes.DeadlineExceeded && tc.code != codes.Canceled && st.Message() != tc.err.Error() {
				t.Fatalf("message %q, want %q", st.Message(), tc.err.Error())
			}
		})
	}
}
