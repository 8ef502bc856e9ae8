package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Server is an in-process NATS server with JetStream. Create it with New, set
// fields, then Open.
type Server struct {
	// StoreDir holds JetStream's files. Required.
	StoreDir string

	// Listen is host:port for native NATS clients; empty (the default) opens no
	// TCP listener at all.
	Listen string

	// Credentials for native clients; Listen requires User and Password, or Token.
	User, Password, Token string

	// MaxPayload is the largest message the server accepts. Default 1 MiB + 64 KiB.
	MaxPayload int32

	// SyncAlways makes JetStream fsync every message before acknowledging
	// it. jsctl does not need it (its ledger is the durable record); `jsctl
	// bench` uses it for its baseline. Default false.
	SyncAlways bool

	// ReadyTimeout bounds how long Open waits for the server. Default 10s.
	ReadyTimeout time.Duration

	Logger *slog.Logger

	ns *server.Server
}

// New returns a Server storing JetStream data in storeDir.
func New(storeDir string) *Server {
	return &Server{
		StoreDir:     storeDir,
		MaxPayload:   1<<20 + 64<<10,
		ReadyTimeout: 10 * time.Second,
		Logger:       slog.Default(),
	}
}

// ErrNoCredentials is returned by Open when Listen is set without credentials,
// or with both a user and a token (NATS would use the token only).
var ErrNoCredentials = errors.New("nats listener needs credentials: user and password, or token (not both)")

// Open starts the server and waits until it accepts connections.
func (s *Server) Open() error {
	if s.ns != nil {
		return errors.New("nats server already open")
	}
	opts := &server.Options{
		ServerName: "jsctl",
		JetStream:  true,
		StoreDir:   s.StoreDir,
		MaxPayload: s.MaxPayload,
		NoSigs:     true,
		DontListen: s.Listen == "",
		SyncAlways: s.SyncAlways,
	}
	if s.Listen != "" {
		host, port, err := splitHostPort(s.Listen)
		if err != nil {
			return fmt.Errorf("nats listen %q: %w", s.Listen, err)
		}
		userPass := s.User != "" && s.Password != ""
		if userPass == (s.Token != "") || (s.Token != "" && s.User+s.Password != "") {
			return ErrNoCredentials
		}
		opts.Host, opts.Port = host, port
		opts.Username, opts.Password, opts.Authorization = s.User, s.Password, s.Token
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("configure nats server: %w", err)
	}
	ns.SetLoggerV2(&logger{s.Logger}, s.Logger.Enabled(context.Background(), slog.LevelDebug), false, false)
	ns.Start()
	if !ns.ReadyForConnections(s.ReadyTimeout) {
		ns.Shutdown()
		return fmt.Errorf("nats server not ready after %s", s.ReadyTimeout)
	}
	if !ns.JetStreamEnabled() {
		ns.Shutdown()
		return fmt.Errorf("jetstream did not start (store dir %s)", s.StoreDir)
	}
	s.ns = ns
	return nil
}

// Connect returns an in-process client connection.
func (s *Server) Connect(name string) (*nats.Conn, error) {
	if s.ns == nil {
		return nil, errors.New("connect to embedded nats: server is not running")
	}
	opts := []nats.Option{nats.InProcessServer(s.ns), nats.Name(name), nats.MaxReconnects(-1)}
	if s.Token != "" {
		opts = append(opts, nats.Token(s.Token))
	} else if s.User != "" {
		opts = append(opts, nats.UserInfo(s.User, s.Password))
	}
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to embedded nats: %w", err)
	}
	return nc, nil
}

// Running reports whether the server is up and JetStream enabled.
func (s *Server) Running() bool {
	return s.ns != nil && s.ns.Running() && s.ns.JetStreamEnabled()
}

// ClientURL is the URL native clients use; empty without a listener.
func (s *Server) ClientURL() string {
	if s.Listen == "" || s.ns == nil {
		return ""
	}
	return s.ns.ClientURL()
}

// Close shuts the server down and waits for it.
func (s *Server) Close() error {
	if s.ns == nil {
		return nil
	}
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	s.ns = nil
	return nil
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// logger routes nats-server logs to slog.
type logger struct{ l *slog.Logger }

func (l *logger) Noticef(format string, v ...any) {
	l.l.Debug(fmt.Sprintf(format, v...), "component", "nats")
}
func (l *logger) Warnf(format string, v ...any) {
	l.l.Warn(fmt.Sprintf(format, v...), "component", "nats")
}
func (l *logger) Fatalf(format string, v ...any) {
	l.l.Error(fmt.Sprintf(format, v...), "component", "nats")
}
func (l *logger) Errorf(format string, v ...any) {
	l.l.Error(fmt.Sprintf(format, v...), "component", "nats")
}
func (l *logger) Debugf(format string, v ...any) {
	l.l.Debug(fmt.Sprintf(format, v...), "component", "nats")
}
func (l *logger) Tracef(format string, v ...any) {
	l.l.Debug(fmt.Sprintf(format, v...), "component", "nats")
}
