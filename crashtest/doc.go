// Package crashtest proves that jsctl loses no acknowledged event when it is
// killed. Its tests build the real jsctl binary, run `jsctl serve` on a temp
// data dir under concurrent NewEvent load with subscribers acking, kill it
// with SIGKILL at random moments (or at failpoints between the pipeline's
// steps), restart it, and check everything against the client's own record of
// the acks it received.
//
// The normal test suite runs a short version. The long runs:
//
//	go test ./crashtest -run TestKillLoop -cycles 200 -timeout 60m -v
//	go test ./crashtest -run TestFailpoints -failpoint-runs 50 -timeout 60m -v
//	go test ./crashtest -run TestPowerLoss -power-cycles 30 -timeout 60m -v
//
// TestPowerLoss needs FUSE (/dev/fuse and fusermount3 from Debian's fuse3);
// without it, it skips and says so.
package crashtest
