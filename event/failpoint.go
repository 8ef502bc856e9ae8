//go:build !failpoints

package event

// failpoint marks a step of the pipeline where the crash tests kill the
// process. It does nothing unless jsctl is built with -tags failpoints (see
// failpoint_on.go).
func failpoint(string) {}
