//go:build failpoints

package event

import (
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// Failpoints, for builds with -tags failpoints only. JSCTL_FAILPOINT=name:n
// kills the process with SIGKILL the n-th time the pipeline passes the named
// step (n defaults to 1). Steps:
//
//	after-ledger-commit   the event is durable in the ledger, not yet published
//	after-puback          JetStream acknowledged it, not yet marked PUBLISHED
//	after-mark            marked PUBLISHED (not yet committed), not yet replied
//	after-ack-record      a subscriber's acks are durable in the ledger, not yet passed to JetStream
var (
	failpointName  string
	failpointAfter int64 = 1
	failpointSeen  atomic.Int64
)

func init() {
	spec := os.Getenv("JSCTL_FAILPOINT")
	name, n, ok := strings.Cut(spec, ":")
	failpointName = name
	if ok {
		if v, err := strconv.ParseInt(n, 10, 64); err == nil && v > 0 {
			failpointAfter = v
		}
	}
}

func failpoint(name string) {
	if name != failpointName {
		return
	}
	if failpointSeen.Add(1) == failpointAfter {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // never return: the signal is on its way
	}
}
