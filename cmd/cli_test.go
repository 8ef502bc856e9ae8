package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs jsctl with args and stdin, returning the exit code and output.
func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	root := NewRootCommand()
	var stdout, stderr bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	code := mainWith(context.Background(), root, args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestCLIPublishAndStatus(t *testing.T) {
	a := startApp(t, testConfig(t, t.TempDir()))
	addr := "--addr=" + a.GRPCAddr()

	// publish -o json gives the correlation ID for scripts.
	code, out, errOut := runCLI(t, "", "publish", "order.created", `{"id":42}`, "-H", "source=shop", "-o", "json", addr)
	if code != 0 {
		t.Fatalf("publish: exit %d: %s", code, errOut)
	}
	var resp struct {
		Ack   bool `json:"ack"`
		Event struct {
			CorrelationID string `json:"correlationId"`
			Status        string `json:"status"`
		} `json:"event"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("publish -o json: %v\n%s", err, out)
	}
	id := resp.Event.CorrelationID
	if !resp.Ack || id == "" || resp.Event.Status != "STATUS_PUBLISHED" {
		t.Fatalf("publish response %+v", resp)
	}

	t.Run("StatusText", func(t *testing.T) {
		code, out, errOut := runCLI(t, "", "status", id, "--payload", addr)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		for _, want := range []string{"Correlation ID:", id, "Status:", "PUBLISHED", "order.created", "source=shop", `{\"id\":42}`, "ACCEPTED -> PUBLISHED"} {
			if !strings.Contains(out, want) {
				t.Errorf("status output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("StatusJSON", func(t *testing.T) {
		code, out, errOut := runCLI(t, "", "status", id, "-o", "json", addr)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var st struct {
			Status string `json:"status"`
			Event  struct {
				StreamSequence string `json:"streamSequence"`
			} `json:"event"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if st.Status != "STATUS_PUBLISHED" || st.Event.StreamSequence != "1" {
			t.Fatalf("status json %+v", st)
		}
	})
	t.Run("PublishFromStdin", func(t *testing.T) {
		code, out, errOut := runCLI(t, "from stdin", "publish", "order.piped", "-", addr)
		if code != 0 || !strings.Contains(out, "ack=true") {
			t.Fatalf("exit %d: %s %s", code, out, errOut)
		}
		assertPayload(t, a, strings.Fields(out)[0], "from stdin")
	})
	t.Run("PublishFromFile", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "p.json")
		if err := os.WriteFile(path, []byte(`{"file":true}`), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := runCLI(t, "", "publish", "order.filed", "@"+path, addr)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		assertPayload(t, a, strings.Fields(out)[0], `{"file":true}`)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		code, _, errOut := runCLI(t, "", "status", "01900000-0000-7000-8000-000000000000", addr)
		if code != 1 || !strings.Contains(errOut, "NotFound") {
			t.Fatalf("exit %d, stderr %q; want 1 and NotFound", code, errOut)
		}
	})
	t.Run("ErrInvalidType", func(t *testing.T) {
		code, _, errOut := runCLI(t, "", "publish", "bad type", "x", addr)
		if code != 1 || !strings.Contains(errOut, "InvalidArgument") {
			t.Fatalf("exit %d, stderr %q; want 1 and InvalidArgument", code, errOut)
		}
	})
	t.Run("ErrBadHeaderFlag", func(t *testing.T) {
		code, _, errOut := runCLI(t, "", "publish", "a", "x", "-H", "novalue", addr)
		if code != 1 || !strings.Contains(errOut, "name=value") {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
	})
}

func assertPayload(t *testing.T, a *App, id, want string) {
	t.Helper()
	c, _ := dialApp(t, a)
	if got := string(getStatus(t, c, id).GetEvent().GetPayload()); got != want {
		t.Fatalf("payload %q, want %q", got, want)
	}
}

func TestCLIHealth(t *testing.T) {
	a := startApp(t, testConfig(t, t.TempDir()))
	code, out, errOut := runCLI(t, "", "health", "--addr", a.GRPCAddr())
	if code != 0 || strings.TrimSpace(out) != "SERVING" {
		t.Fatalf("health: exit %d, %q %q", code, out, errOut)
	}
	a.Close()
	code, _, _ = runCLI(t, "", "health", "--addr", a.GRPCAddr(), "--timeout", "500ms")
	if code == 0 {
		t.Fatal("health of a stopped server exited 0")
	}
}

func TestCLIVersion(t *testing.T) {
	code, out, _ := runCLI(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "jsctl ") || !strings.Contains(out, "commit ") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
}

func TestCLICompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, out, errOut := runCLI(t, "", "completion", shell)
		if code != 0 || !strings.Contains(out, "jsctl") || len(out) < 1000 {
			t.Errorf("completion %s: exit %d, %d bytes of script, stderr %q", shell, code, len(out), errOut)
		}
	}
}
