package cmd

import (
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/jsctl/jsctl/boltstore"
	"github.com/jsctl/jsctl/event"
	"github.com/jsctl/jsctl/rpc"
)

// Config is everything `jsctl serve` can be told. config.example.yaml mirrors
// it one to one, with the defaults below. Precedence, highest first: flags,
// JSCTL_* environment variables (JSCTL_GRPC_LISTEN for grpc.listen), the file
// given by --config, defaults.
type Config struct {
	// DataDir holds the ledger (ledger.db) and JetStream's files (jetstream/).
	// Default "./data".
	DataDir string `yaml:"data_dir"`
	// LogLevel is debug, info, warn or error. Default "info".
	LogLevel string `yaml:"log_level"`
	// LogFormat is auto (text on a terminal, JSON otherwise), text or json.
	// Default "auto".
	LogFormat string `yaml:"log_format"`
	// ShutdownTimeout bounds how long in-flight calls may take after SIGTERM.
	// Default 10s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// GCPercent is the Go garbage collector's target (GOGC): a collection
	// starts when the heap has grown this many percent over what survived
	// the last one. Higher trades memory for CPU. The GOGC environment
	// variable, if set, wins. Default 300.
	GCPercent int `yaml:"gc_percent"`
	// MemoryLimitBytes is the Go runtime's soft memory limit (GOMEMLIMIT):
	// near it the collector runs more often, whatever gc_percent says. jsctl
	// lowers it to 80% of the memory of the box or its container (cgroup)
	// when that is less. 0 is none. The GOMEMLIMIT environment variable, if
	// set, wins. Default 536870912 (512 MiB).
	MemoryLimitBytes int64 `yaml:"memory_limit_bytes"`

	GRPC   GRPCConfig   `yaml:"grpc"`
	HTTP   HTTPConfig   `yaml:"http"`
	NATS   NATSConfig   `yaml:"nats"`
	Ledger LedgerConfig `yaml:"ledger"`
	Limits LimitsConfig `yaml:"limits"`
	Auth   AuthConfig   `yaml:"auth"`
	// Groups are consumer groups created or updated at start. Others are
	// created by the first Subscribe that names them, with the defaults
	// below. Default none.
	Groups []GroupConfig `yaml:"groups"`
}

// GroupConfig declares a consumer group.
type GroupConfig struct {
	// Name: letters, digits, '-' and '_'. Required.
	Name string `yaml:"name"`
	// Filters are event types with '*' and '>' wildcards; empty for all.
	Filters []string `yaml:"filters"`
	// MaxDeliveries before the event FAILS in this group. Default 5.
	MaxDeliveries int `yaml:"max_deliveries"`
	// AckWait before an unsettled delivery is delivered again. Default 30s.
	AckWait time.Duration `yaml:"ack_wait"`
	// Backoff replaces ack_wait per delivery (delivery n waits backoff[n-1],
	// the last repeats) and is the delay after a nak without its own.
	// Default none.
	Backoff []time.Duration `yaml:"backoff"`
	// MaxAckPending caps unsettled deliveries in the group. Default 1000.
	MaxAckPending int `yaml:"max_ack_pending"`
}

// RPCTokens converts the configured tokens.
func (c *Config) RPCTokens() []rpc.Token {
	var out []rpc.Token
	for _, t := range c.Auth.Tokens {
		out = append(out, rpc.Token{Name: t.Name, SHA256: t.SHA256, Roles: t.Roles})
	}
	return out
}

// Group returns the group with defaults filled in.
func (g GroupConfig) Group() event.Group {
	out := event.DefaultGroup(g.Name)
	out.Filters = g.Filters
	if g.MaxDeliveries != 0 {
		out.MaxDeliveries = g.MaxDeliveries
	}
	if g.AckWait != 0 {
		out.AckWait = g.AckWait
	}
	out.Backoff = g.Backoff
	if g.MaxAckPending != 0 {
		out.MaxAckPending = g.MaxAckPending
	}
	return out
}

// GRPCConfig is the gRPC API.
type GRPCConfig struct {
	// Listen is host:port. Default "127.0.0.1:50051".
	Listen string `yaml:"listen"`
	// TLS: server certificate and key (PEM); both or neither. Default none
	// (plaintext). ClientCAFile turns on mTLS: clients must present a
	// certificate signed by it.
	TLSCertFile     string `yaml:"tls_cert_file"`
	TLSKeyFile      string `yaml:"tls_key_file"`
	TLSClientCAFile string `yaml:"tls_client_ca_file"`
	// MaxConcurrentStreams caps the calls in progress on one connection.
	// Default 1024.
	MaxConcurrentStreams uint32 `yaml:"max_concurrent_streams"`
	// KeepaliveMinTime: a client pinging more often is disconnected.
	// Default 10s.
	KeepaliveMinTime time.Duration `yaml:"keepalive_min_time"`
	// RateLimit is the calls per second allowed to each client (its token,
	// or its IP address without auth); beyond it RESOURCE_EXHAUSTED. 0 turns
	// it off. Default 0.
	RateLimit float64 `yaml:"rate_limit"`
	// RateBurst is how many calls a client may make at once above the rate.
	// Default 0, which means the rate itself (at least 1).
	RateBurst int `yaml:"rate_burst"`
}

// AuthConfig holds the accepted bearer tokens.
type AuthConfig struct {
	// Tokens: when any is set, every call but health checks needs
	// "authorization: Bearer <token>" with a role the method needs. Only
	// hashes are stored; `jsctl token create` makes a token and its line.
	// Default none (no auth).
	Tokens []TokenConfig `yaml:"tokens"`
}

// TokenConfig is one accepted token.
type TokenConfig struct {
	Name   string   `yaml:"name"`
	SHA256 string   `yaml:"sha256"`
	Roles  []string `yaml:"roles"`
}

// HTTPConfig serves /healthz and /readyz.
type HTTPConfig struct {
	// Listen is host:port; empty disables HTTP. Default "127.0.0.1:8080".
	Listen string `yaml:"listen"`
	// Pprof serves Go's profiler under /debug/pprof/ (CPU, heap,
	// goroutines). It exposes internals: keep the listener on loopback when
	// it is on. Default false.
	Pprof bool `yaml:"pprof"`
}

// NATSConfig is the embedded NATS JetStream server.
type NATSConfig struct {
	// Listen is host:port for native NATS clients; empty (the default) opens no
	// port. Requires User and Password, or Token.
	Listen   string `yaml:"listen"`
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	Token    string `yaml:"token"`
	// SubjectPrefix is put before event types: order.created is published on
	// events.order.created. Default "events".
	SubjectPrefix string `yaml:"subject_prefix"`
	// Stream is the JetStream stream's name. Default "EVENTS".
	Stream string `yaml:"stream"`
	// DuplicateWindow is how long JetStream drops a repeated message ID. It
	// is a second guard (recovery looks in the stream before publishing
	// again), and JetStream keeps ~200 B of memory per message published
	// within it. At least AckTimeout. Default 30s.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// AckTimeout bounds the wait for JetStream's acknowledgement of a publish.
	// Default 10s.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// MaxAge and MaxBytes bound the stream: older messages, or those beyond
	// the size, are removed (the ledger keeps the events' records). 0 is no
	// limit. Default 0.
	MaxAge   time.Duration `yaml:"max_age"`
	MaxBytes int64         `yaml:"max_bytes"`
	// MaxInFlight caps publishes waiting for an acknowledgement. Default 16384.
	MaxInFlight int `yaml:"max_in_flight"`
}

// LedgerConfig is the bbolt ledger.
type LedgerConfig struct {
	// LockTimeout is how long start-up waits for another process to release
	// the ledger. Default 1s.
	LockTimeout time.Duration `yaml:"lock_timeout"`
	// IdempotencyTTL is how long idempotency keys are remembered. Default 24h.
	IdempotencyTTL time.Duration `yaml:"idempotency_ttl"`
	// MaxBatch caps the events that share one commit. Default 4096.
	MaxBatch int `yaml:"max_batch"`
	// MaxSizeBytes caps the ledger file; 0 means no limit. Default 0.
	MaxSizeBytes int `yaml:"max_size_bytes"`
	// Retention bounds how long events that are done are kept.
	Retention RetentionConfig `yaml:"retention"`
}

// RetentionConfig says how long the ledger keeps events that are done, so
// that it does not grow without bound; 0 keeps them forever. Its fields are
// boltstore.Retention's, which it converts to.
type RetentionConfig struct {
	// Processed is how long an event is kept after it became PROCESSED.
	// Default 168h (7 days).
	Processed time.Duration `yaml:"processed"`
	// Failed is how long an event is kept after it became FAILED (a
	// redrive starts the count again). Default 720h (30 days).
	Failed time.Duration `yaml:"failed"`
	// Published is how long after its creation an event still PUBLISHED
	// (no consumer group settled it) is kept. Default 0: forever.
	Published time.Duration `yaml:"published"`
	// Delivered is how long after its creation an event still DELIVERED
	// (handed out, never settled: a native client's outcome lost in a
	// crash, say) is kept. Default 0: forever.
	Delivered time.Duration `yaml:"delivered"`
	// Tombstones is how long after its removal an expired event's ID is
	// remembered, so that EventStatus can say when it expired and in which
	// status. Default 720h.
	Tombstones time.Duration `yaml:"tombstones"`
	// DropProcessedPayloads drops an event's payload once it is PROCESSED;
	// EventStatus then returns an empty payload. Default false.
	DropProcessedPayloads bool `yaml:"drop_processed_payloads"`
}

// LimitsConfig bounds what one event may carry.
type LimitsConfig struct {
	// Default 255.
	MaxEventTypeBytes int `yaml:"max_event_type_bytes"`
	// Default 1048576 (1 MiB); at most 64 MiB.
	MaxPayloadBytes int `yaml:"max_payload_bytes"`
	// Default 32.
	MaxHeaders int `yaml:"max_headers"`
	// Names plus values of all headers. Default 16384.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// Default 256.
	MaxIdempotencyKeyBytes int `yaml:"max_idempotency_key_bytes"`
}

// DefaultConfig returns the configuration used when nothing is set.
func DefaultConfig() Config {
	l := event.DefaultLimits()
	return Config{
		DataDir:          "./data",
		LogLevel:         "info",
		LogFormat:        "auto",
		ShutdownTimeout:  10 * time.Second,
		GCPercent:        300,
		MemoryLimitBytes: 512 << 20,
		GRPC:             GRPCConfig{Listen: "127.0.0.1:50051", MaxConcurrentStreams: 1024, KeepaliveMinTime: 10 * time.Second},
		HTTP:             HTTPConfig{Listen: "127.0.0.1:8080"},
		NATS: NATSConfig{
			SubjectPrefix:   "events",
			Stream:          "EVENTS",
			DuplicateWindow: 30 * time.Second,
			AckTimeout:      10 * time.Second,
			MaxInFlight:     16384,
		},
		Ledger: LedgerConfig{
			LockTimeout:    time.Second,
			IdempotencyTTL: 24 * time.Hour,
			MaxBatch:       4096,
			Retention:      RetentionConfig(boltstore.DefaultRetention()),
		},
		Limits: LimitsConfig{
			MaxEventTypeBytes:      l.MaxTypeBytes,
			MaxPayloadBytes:        l.MaxPayloadBytes,
			MaxHeaders:             l.MaxHeaders,
			MaxHeaderBytes:         l.MaxHeaderBytes,
			MaxIdempotencyKeyBytes: l.MaxIdempotencyKeyBytes,
		},
		Groups: []GroupConfig{},
		Auth:   AuthConfig{Tokens: []TokenConfig{}},
	}
}

// EnvPrefix starts every environment variable jsctl reads.
const EnvPrefix = "JSCTL_"

// LoadConfig builds the configuration from defaults, the YAML file at path
// (if not empty), the environment (environ, as from os.Environ) and the
// flag overrides (config key -> value), then validates it. Errors name the key.
func LoadConfig(path string, environ []string, flags map[string]any) (Config, error) {
	k := koanf.New(".")
	if path != "" {
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	keys := ConfigKeys()
	env := map[string]any{}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		if key, ok := envKey(keys, name); ok {
			env[key] = value
		}
	}
	if err := k.Load(confmap.Provider(env, "."), nil); err != nil {
		return Config{}, err
	}
	if err := k.Load(confmap.Provider(flags, "."), nil); err != nil {
		return Config{}, err
	}
	cfg := DefaultConfig()
	err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{
		Tag: "yaml",
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook:       mapstructure.StringToTimeDurationHookFunc(),
			WeaklyTypedInput: true,
			ErrorUnused:      true,
			TagName:          "yaml",
		},
	})
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, cfg.Validate()
}

// envKey maps JSCTL_NATS_ACK_TIMEOUT to nats.ack_timeout.
func envKey(keys []string, name string) (string, bool) {
	want := strings.ToLower(strings.TrimPrefix(name, EnvPrefix))
	for _, k := range keys {
		if strings.ReplaceAll(k, ".", "_") == want {
			return k, true
		}
	}
	return "", false
}

// EnvName returns the environment variable for a config key.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// ConfigKeys lists every config key, such as "grpc.listen", in struct order.
func ConfigKeys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for f := range t.Fields() {
			name := prefix + f.Tag.Get("yaml")
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
				walk(f.Type, name+".")
				continue
			}
			keys = append(keys, name)
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return keys
}

// Validate checks every value and names the key of the first bad one.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config %s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.DataDir == "" {
		bad("data_dir", "must not be empty")
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		bad("log_level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	if !slices.Contains([]string{"auto", "text", "json"}, c.LogFormat) {
		bad("log_format", "%q is not one of auto, text, json", c.LogFormat)
	}
	if c.GCPercent < 25 || c.GCPercent > 10000 {
		bad("gc_percent", "must be between 25 and 10000, got %d", c.GCPercent)
	}
	if c.MemoryLimitBytes != 0 && c.MemoryLimitBytes < 64<<20 {
		bad("memory_limit_bytes", "must be 0 (none) or at least 67108864 (64 MiB), got %d", c.MemoryLimitBytes)
	}
	positive := map[string]time.Duration{
		"shutdown_timeout": c.ShutdownTimeout, "nats.duplicate_window": c.NATS.DuplicateWindow,
		"nats.ack_timeout": c.NATS.AckTimeout, "ledger.lock_timeout": c.Ledger.LockTimeout,
		"ledger.idempotency_ttl": c.Ledger.IdempotencyTTL,
	}
	for _, key := range slices.Sorted(maps.Keys(positive)) {
		if positive[key] <= 0 {
			bad(key, "must be a positive duration such as 10s, got %s", positive[key])
		}
	}
	counts := map[string]int{
		"nats.max_in_flight": c.NATS.MaxInFlight, "ledger.max_batch": c.Ledger.MaxBatch,
		"limits.max_event_type_bytes": c.Limits.MaxEventTypeBytes, "limits.max_payload_bytes": c.Limits.MaxPayloadBytes,
		"limits.max_headers": c.Limits.MaxHeaders, "limits.max_header_bytes": c.Limits.MaxHeaderBytes,
		"limits.max_idempotency_key_bytes": c.Limits.MaxIdempotencyKeyBytes,
	}
	for _, key := range slices.Sorted(maps.Keys(counts)) {
		if counts[key] <= 0 {
			bad(key, "must be positive, got %d", counts[key])
		}
	}
	retention := map[string]time.Duration{
		"ledger.retention.processed": c.Ledger.Retention.Processed, "ledger.retention.failed": c.Ledger.Retention.Failed,
		"ledger.retention.published": c.Ledger.Retention.Published, "ledger.retention.tombstones": c.Ledger.Retention.Tombstones,
		"ledger.retention.delivered": c.Ledger.Retention.Delivered,
	}
	for _, key := range slices.Sorted(maps.Keys(retention)) {
		if retention[key] < 0 {
			bad(key, "must be 0 (keep forever) or a positive duration such as 168h, got %s", retention[key])
		}
	}
	if c.Ledger.MaxSizeBytes < 0 {
		bad("ledger.max_size_bytes", "must be 0 (no limit) or positive, got %d", c.Ledger.MaxSizeBytes)
	}
	if c.Limits.MaxPayloadBytes > 64<<20 {
		bad("limits.max_payload_bytes", "%d is over NATS's maximum of 64 MiB", c.Limits.MaxPayloadBytes)
	}
	checkAddr := func(key, addr string, optional bool) {
		if addr == "" && optional {
			return
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(key, "%q is not host:port (%v)", addr, err)
		}
	}
	checkAddr("grpc.listen", c.GRPC.Listen, false)
	checkAddr("http.listen", c.HTTP.Listen, true)
	checkAddr("nats.listen", c.NATS.Listen, true)
	if c.NATS.Listen != "" && (c.NATS.User == "" || c.NATS.Password == "") && c.NATS.Token == "" {
		bad("nats.listen", "a NATS port for native clients needs credentials: set nats.user and nats.password, or nats.token")
	}
	if c.NATS.Token != "" && (c.NATS.User != "" || c.NATS.Password != "") {
		bad("nats.token", "set either nats.token or nats.user and nats.password, not both (NATS would accept only the token)")
	}
	if err := event.DefaultLimits().CheckType(c.NATS.SubjectPrefix); err != nil {
		bad("nats.subject_prefix", "%q is not a subject: %v", c.NATS.SubjectPrefix, err)
	}
	if c.NATS.SubjectPrefix == "jsctl" || strings.HasPrefix(c.NATS.SubjectPrefix, "jsctl.") {
		bad("nats.subject_prefix", "jsctl.> is reserved for redrive messages")
	}
	if c.NATS.MaxAge < 0 || c.NATS.MaxBytes < 0 {
		bad("nats.max_age", "nats.max_age and nats.max_bytes must be 0 (no limit) or positive")
	}
	if c.NATS.DuplicateWindow < c.NATS.AckTimeout {
		bad("nats.duplicate_window", "%s is shorter than nats.ack_timeout %s: a publish retried after its acknowledgement timed out must still be recognised", c.NATS.DuplicateWindow, c.NATS.AckTimeout)
	}
	if c.NATS.MaxAge > 0 && c.NATS.DuplicateWindow > c.NATS.MaxAge {
		bad("nats.duplicate_window", "%s is longer than nats.max_age %s", c.NATS.DuplicateWindow, c.NATS.MaxAge)
	}
	if c.GRPC.MaxConcurrentStreams == 0 {
		bad("grpc.max_concurrent_streams", "must be positive")
	}
	if c.GRPC.KeepaliveMinTime <= 0 {
		bad("grpc.keepalive_min_time", "must be a positive duration such as 10s")
	}
	if c.GRPC.RateLimit < 0 || c.GRPC.RateBurst < 0 {
		bad("grpc.rate_limit", "rate_limit and rate_burst must not be negative")
	}
	if (c.GRPC.TLSCertFile == "") != (c.GRPC.TLSKeyFile == "") {
		bad("grpc.tls_cert_file", "set both grpc.tls_cert_file and grpc.tls_key_file, or neither")
	}
	if c.GRPC.TLSClientCAFile != "" && c.GRPC.TLSCertFile == "" {
		bad("grpc.tls_client_ca_file", "mTLS needs grpc.tls_cert_file and grpc.tls_key_file too")
	}
	for i, tc := range c.Auth.Tokens {
		key := fmt.Sprintf("auth.tokens[%d]", i)
		if b, err := hex.DecodeString(tc.SHA256); err != nil || len(b) != 32 {
			bad(key+".sha256", "want the 64 hex digits `jsctl token create` prints")
		}
		if len(tc.Roles) == 0 {
			bad(key+".roles", "give at least one of %s", strings.Join(rpc.Roles, ", "))
		}
		for _, r := range tc.Roles {
			if !slices.Contains(rpc.Roles, r) {
				bad(key+".roles", "%q is not one of %s", r, strings.Join(rpc.Roles, ", "))
			}
		}
	}
	seen := map[string]bool{}
	for i, gc := range c.Groups {
		g := gc.Group()
		if err := g.Check(c.EventLimits()); err != nil {
			bad(fmt.Sprintf("groups[%d]", i), "%v", err)
		}
		if seen[g.Name] {
			bad(fmt.Sprintf("groups[%d].name", i), "group %q is declared twice", g.Name)
		}
		seen[g.Name] = true
	}
	if c.NATS.Stream == "" || strings.ContainsAny(c.NATS.Stream, ".*> \t\r\n/\\") {
		bad("nats.stream", "%q is not a stream name (no spaces, '.', '*', '>', '/' or '\\')", c.NATS.Stream)
	}
	return errors.Join(errs...)
}

// EventLimits returns the event limits.
func (c *Config) EventLimits() event.Limits {
	return event.Limits{
		MaxTypeBytes:           c.Limits.MaxEventTypeBytes,
		MaxPayloadBytes:        c.Limits.MaxPayloadBytes,
		MaxHeaders:             c.Limits.MaxHeaders,
		MaxHeaderBytes:         c.Limits.MaxHeaderBytes,
		MaxIdempotencyKeyBytes: c.Limits.MaxIdempotencyKeyBytes,
	}
}

// LedgerPath is the bbolt file.
func (c *Config) LedgerPath() string { return filepath.Join(c.DataDir, "ledger.db") }

// JetStreamDir is JetStream's store directory.
func (c *Config) JetStreamDir() string { return filepath.Join(c.DataDir, "jetstream") }

// configFileFromEnv returns JSCTL_CONFIG, the config file used when --config is not given.
func configFileFromEnv() string { return os.Getenv(EnvPrefix + "CONFIG") }
