package embedded

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestServerOpen(t *testing.T) {
	t.Run("Defaults", func(t *testing.T) {
		srv := newServer(t, nil)
		if got := srv.ClientURL(); got != "" {
			t.Errorf("ClientURL() = %q, want empty without Listen", got)
		}
		if addr := srv.ns.Addr(); addr != nil {
			t.Errorf("server listens on %v, want no TCP listener", addr)
		}
		nc := connect(t, srv)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.AccountInfo(testContext(t)); err != nil {
			t.Fatalf("JetStream account info over the in-process connection: %v", err)
		}
	})

	t.Run("CloseKeepsStore", func(t *testing.T) {
		dir := t.TempDir()
		srv := newServer(t, func(s *Server) { s.StoreDir = dir })
		nc := connect(t, srv)
		publish(t, openQueue(t, nc, nil), newEvent(t, "order.created", "{}"))
		nc.Close()

		if err := srv.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := srv.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if got := srv.ClientURL(); got != "" {
			t.Errorf("ClientURL() after Close = %q, want empty", got)
		}
		if !hasDir(t, filepath.Join(dir, "jetstream"), "EVENTS") {
			t.Errorf("no EVENTS stream directory under %s/jetstream after Close", dir)
		}
	})

	t.Run("CloseBeforeOpen", func(t *testing.T) {
		if err := New(t.TempDir()).Close(); err != nil {
			t.Fatalf("Close of an unopened server: %v", err)
		}
	})
}

func TestServerOpenListenErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		listen   string
		user     string
		password string
		token    string
		noCreds  bool
	}{
		{name: "ErrNoCredentials/TokenAndUser", listen: "127.0.0.1:0", user: "u", password: "p", token: "t", noCreds: true},
		{name: "ErrNoCredentials", listen: "127.0.0.1:0", noCreds: true},
		{name: "ErrNoCredentials/UserOnly", listen: "127.0.0.1:0", user: "u", noCreds: true},
		{name: "ErrNoCredentials/PasswordOnly", listen: "127.0.0.1:0", password: "p", noCreds: true},
		{name: "MissingPort", listen: "127.0.0.1", user: "u", password: "p"},
		{name: "BadPort", listen: "127.0.0.1:65536", user: "u", password: "p"},
		{name: "NonNumericPort", listen: "127.0.0.1:nats", user: "u", password: "p"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := New(t.TempDir())
			srv.Logger = discardLogger()
			srv.Listen, srv.User, srv.Password, srv.Token = tc.listen, tc.user, tc.password, tc.token
			err := srv.Open()
			if err == nil {
				srv.Close()
				t.Fatalf("Open with Listen %q, user %q, password %q succeeded; want an error", tc.listen, tc.user, tc.password)
			}
			if got := errors.Is(err, ErrNoCredentials); got != tc.noCreds {
				t.Errorf("Open() = %v; errors.Is(err, ErrNoCredentials) = %v, want %v", err, got, tc.noCreds)
			}
			if got := srv.ClientURL(); got != "" {
				t.Errorf("ClientURL() after failed Open = %q, want empty", got)
			}
			if err := srv.Close(); err != nil {
				t.Errorf("Close after failed Open: %v", err)
			}
		})
	}
}

func TestServerListenUserPassword(t *testing.T) {
	srv := newServer(t, func(s *Server) {
		s.Listen, s.User, s.Password = "127.0.0.1:0", "jsctl", "s3cret"
	})
	url := srv.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || strings.HasSuffix(url, ":0") || strings.HasSuffix(url, ":-1") {
		t.Fatalf("ClientURL() = %q, want nats://127.0.0.1:<bound port>", url)
	}

	t.Run("OK", func(t *testing.T) {
		nc, err := nats.Connect(url, nats.UserInfo("jsctl", "s3cret"))
		if err != nil {
			t.Fatalf("connect over TCP with the right credentials: %v", err)
		}
		defer nc.Close()
		// The TCP client sees the same server as the in-process one.
		inproc := connect(t, srv)
		sub, err := inproc.SubscribeSync("ping")
		if err != nil {
			t.Fatal(err)
		}
		if err := inproc.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish("ping", []byte("tcp")); err != nil {
			t.Fatal(err)
		}
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("in-process subscriber did not get the TCP client's message: %v", err)
		}
		if string(m.Data) != "tcp" {
			t.Errorf("got %q, want %q", m.Data, "tcp")
		}
	})

	t.Run("ErrAuthorization/WrongPassword", func(t *testing.T) {
		nc, err := nats.Connect(url, nats.UserInfo("jsctl", "wrong"))
		if err == nil {
			nc.Close()
			t.Fatal("connect with a wrong password succeeded")
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("connect with a wrong password: %v, want nats.ErrAuthorization", err)
		}
	})

	t.Run("ErrAuthorization/NoCredentials", func(t *testing.T) {
		nc, err := nats.Connect(url)
		if err == nil {
			nc.Close()
			t.Fatal("connect without credentials succeeded")
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("connect without credentials: %v, want nats.ErrAuthorization", err)
		}
	})

	t.Run("InProcess", func(t *testing.T) {
		nc := connect(t, srv) // Connect must pass the credentials itself
		if !nc.IsConnected() {
			t.Fatalf("in-process connection status %v", nc.Status())
		}
	})
}

func TestServerListenToken(t *testing.T) {
	srv := newServer(t, func(s *Server) { s.Listen, s.Token = "127.0.0.1:0", "t0ken" })
	url := srv.ClientURL()
	if url == "" {
		t.Fatal("ClientURL() is empty with Listen set")
	}

	t.Run("OK", func(t *testing.T) {
		nc, err := nats.Connect(url, nats.Token("t0ken"))
		if err != nil {
			t.Fatalf("connect with the right token: %v", err)
		}
		nc.Close()
	})

	t.Run("ErrAuthorization", func(t *testing.T) {
		nc, err := nats.Connect(url, nats.Token("wrong"))
		if err == nil {
			nc.Close()
			t.Fatal("connect with a wrong token succeeded")
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("connect with a wrong token: %v, want nats.ErrAuthorization", err)
		}
	})

	t.Run("InProcess", func(t *testing.T) {
		nc := connect(t, srv)
		if !nc.IsConnected() {
			t.Fatalf("in-process connection status %v", nc.Status())
		}
	})
}

// newServer opens a server on a temp store dir, after configure (if any) has
// set its fields, and closes it when the test ends.
func newServer(t *testing.T, configure func(*Server)) *Server {
	t.Helper()
	srv := New(t.TempDir())
	srv.Logger = discardLogger()
	if configure != nil {
		configure(srv)
	}
	if err := srv.Open(); err != nil {
		t.Fatalf("open server: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
	})
	return srv
}

// connect returns an in-process connection closed when the test ends (before
// the server, since cleanups run last-in first-out).
func connect(t *testing.T, srv *Server) *nats.Conn {
	t.Helper()
	nc, err := srv.Connect(t.Name())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestServerConnectWhenNotRunning(t *testing.T) {
	srv := New(t.TempDir())
	if _, err := srv.Connect("x"); err == nil {
		t.Fatal("Connect before Open succeeded")
	}
	srv.Logger = discardLogger()
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Connect("x"); err == nil {
		t.Fatal("Connect after Close succeeded")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testContext is the test's context with a deadline, so that a hang fails the
// test instead of stalling it.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkFor calls f every interval until it returns nil, and fails the test
// with f's last error if that does not happen within total.
func checkFor(t *testing.T, total, every time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", total, err)
		}
		<-tick.C
	}
}

// hasDir reports whether root contains a directory named name at any depth.
func hasDir(t *testing.T, root, name string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == name {
			found = true
			return fs.SkipAll
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return found
}
