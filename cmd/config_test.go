package cmd

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/jsctl/jsctl/boltstore"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "jsctl.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigExampleMatchesDefaults keeps config.example.yaml one to one with
// Config: it sets every key, and to its default.
func TestConfigExampleMatchesDefaults(t *testing.T) {
	const example = "../config.example.yaml"
	cfg, err := LoadConfig(example, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, DefaultConfig()) {
		t.Fatalf("config.example.yaml differs from DefaultConfig():\n%+v\n%+v", cfg, DefaultConfig())
	}
	k := koanf.New(".")
	if err := k.Load(file.Provider(example), yaml.Parser()); err != nil {
		t.Fatal(err)
	}
	got := k.Keys()
	for _, key := range ConfigKeys() {
		if !slices.Contains(got, key) {
			t.Errorf("config.example.yaml does not document %s", key)
		}
	}
}

func TestConfigPrecedence(t *testing.T) {
	path := writeConfig(t, "grpc:\n  listen: 127.0.0.1:1001\nhttp:\n  listen: 127.0.0.1:2001\nlog_level: warn\n")
	env := []string{"JSCTL_GRPC_LISTEN=127.0.0.1:1002", "JSCTL_NATS_ACK_TIMEOUT=3s", "JSCTL_LIMITS_MAX_HEADERS=7", "JSCTL_ADDR=ignored", "OTHER=x"}
	cfg, err := LoadConfig(path, env, map[string]any{"grpc.listen": "127.0.0.1:1003"})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"flag over env and file", cfg.GRPC.Listen, "127.0.0.1:1003"},
		{"file over default", cfg.HTTP.Listen, "127.0.0.1:2001"},
		{"file", cfg.LogLevel, "warn"},
		{"env duration", cfg.NATS.AckTimeout, 3 * time.Second},
		{"env int", cfg.Limits.MaxHeaders, 7},
		{"default", cfg.NATS.Stream, "EVENTS"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestConfigErrorsNameTheKey: every bad value fails with the key in the message.
func TestConfigErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name string
		file string
		env  []string
		key  string
	}{
		{"UnknownKey", "grpc:\n  lisen: x\n", nil, "lisen"},
		{"BadDuration", "nats:\n  ack_timeout: soon\n", nil, "ack_timeout"},
		{"NegativeDuration", "shutdown_timeout: -1s\n", nil, "shutdown_timeout"},
		{"BadAddress", "grpc:\n  listen: nowhere\n", nil, "grpc.listen"},
		{"BadLogLevel", "log_level: loud\n", nil, "log_level"},
		{"ZeroPayload", "limits:\n  max_payload_bytes: 0\n", nil, "limits.max_payload_bytes"},
		{"HugePayload", "limits:\n  max_payload_bytes: 100000000\n", nil, "limits.max_payload_bytes"},
		{"BadPrefix", "nats:\n  subject_prefix: 'a.>'\n", nil, "nats.subject_prefix"},
		{"BadStream", "nats:\n  stream: 'A.B'\n", nil, "nats.stream"},
		{"NATSListenWithoutCredentials", "nats:\n  listen: 127.0.0.1:4222\n", nil, "nats.listen"},
		{"BadEnvInt", "", []string{"JSCTL_LEDGER_MAX_BATCH=many"}, "max_batch"},
		{"EmptyDataDir", "data_dir: ''\n", nil, "data_dir"},
		{"TinyGCPercent", "gc_percent: 5\n", nil, "gc_percent"},
		{"TinyMemoryLimit", "", []string{"JSCTL_MEMORY_LIMIT_BYTES=1000"}, "memory_limit_bytes"},
		{"TokenAndUser", "nats:\n  listen: 127.0.0.1:4222\n  token: t\n  user: u\n  password: p\n", nil, "nats.token"},
		{"NegativeRetention", "ledger:\n  retention:\n    processed: -1h\n", nil, "config ledger.retention.processed: must be 0 (keep forever) or a positive duration such as 168h, got -1h0m0s"},
		{"NegativeTombstones", "", []string{"JSCTL_LEDGER_RETENTION_TOMBSTONES=-1s"}, "config ledger.retention.tombstones: must be 0"},
		{"BadRetentionBool", "ledger:\n  retention:\n    drop_processed_payloads: sometimes\n", nil, "drop_processed_payloads"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				path = writeConfig(t, tc.file)
			}
			_, err := LoadConfig(path, tc.env, nil)
			if err == nil || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("err = %v, want one naming %s", err, tc.key)
			}
		})
	}
	t.Run("NATSListenWithToken", func(t *testing.T) {
		if _, err := LoadConfig(writeConfig(t, "nats:\n  listen: 127.0.0.1:4222\n  token: s3cret\n"), nil, nil); err != nil {
			t.Fatal(err)
		}
	})
}

// TestConfigRetention: the retention keys load from the environment like
// the others and convert to the ledger's settings, defaults kept.
func TestConfigRetention(t *testing.T) {
	env := []string{"JSCTL_LEDGER_RETENTION_PUBLISHED=48h", "JSCTL_LEDGER_RETENTION_DROP_PROCESSED_PAYLOADS=true"}
	cfg, err := LoadConfig("", env, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := boltstore.DefaultRetention()
	want.Published, want.DropProcessedPayloads = 48*time.Hour, true
	if got := boltstore.Retention(cfg.Ledger.Retention); got != want {
		t.Errorf("retention = %+v, want %+v", got, want)
	}
}

func TestConfigKeysHaveUniqueEnvNames(t *testing.T) {
	seen := map[string]string{}
	for _, k := range ConfigKeys() {
		env := EnvName(k)
		if other, ok := seen[env]; ok {
			t.Fatalf("%s and %s share %s", k, other, env)
		}
		seen[env] = k
	}
	if len(seen) < 20 {
		t.Fatalf("only %d keys", len(seen))
	}
}

// TestServeRejectsBadConfig runs `jsctl serve` with a bad value: it exits
// non-zero at once and names the key.
func TestServeRejectsBadConfig(t *testing.T) {
	code, _, errOut := runCLI(t, "", "serve", "--data-dir", t.TempDir(), "--grpc-listen", "not-an-address")
	if code == 0 || !strings.Contains(errOut, "grpc.listen") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

// TestStreamLimits: nats.max_age and nats.max_bytes reach the stream.
func TestStreamLimits(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.NATS.MaxAge, cfg.NATS.MaxBytes = time.Hour, 64<<20
	a := startApp(t, cfg)
	s, err := a.queue.JetStream().Stream(ctxT(t), cfg.NATS.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config; got.MaxAge != time.Hour || got.MaxBytes != 64<<20 {
		t.Fatalf("stream limits: max_age %s, max_bytes %d", got.MaxAge, got.MaxBytes)
	}
	t.Run("ErrDuplicateWindowOverMaxAge", func(t *testing.T) {
		if _, err := LoadConfig(writeConfig(t, "nats:\n  max_age: 1m\n  duplicate_window: 2m\n"), nil, nil); err == nil || !strings.Contains(err.Error(), "nats.duplicate_window") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("ErrDuplicateWindowUnderAckTimeout", func(t *testing.T) {
		if _, err := LoadConfig(writeConfig(t, "nats:\n  ack_timeout: 20s\n  duplicate_window: 15s\n"), nil, nil); err == nil || !strings.Contains(err.Error(), "nats.duplicate_window") || !strings.Contains(err.Error(), "ack_timeout") {
			t.Fatalf("err = %v", err)
		}
	})
}
