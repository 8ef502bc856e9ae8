package crashtest

import (
	"os/exec"
	"testing"
)

// TestVersionStamp builds jsctl with -ldflags as the Dockerfile does and
// checks what jsctl version prints.
func TestVersionStamp(t *testing.T) {
	plain, _ := build(t)
	out, err := exec.Command(plain, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("jsctl version: %v\n%s", err, out)
	}
	want := "jsctl " + stampVersion + "\ncommit " + stampCommit + "\nbuilt " + stampDate + "\n"
	if string(out) != want {
		t.Errorf("jsctl version printed\n%s\nwant\n%s", out, want)
	}
}
