package cmd

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// serveOptions are the flags of `jsctl serve`.
type serveOptions struct {
	configFile string
	overrides  map[string]*string // config key -> flag value
}

// serveFlags maps flag names to config keys; a flag overrides its key only
// when given.
var serveFlags = []struct{ flag, key, usage string }{
	{"data-dir", "data_dir", "directory for the ledger and JetStream files (default ./data)"},
	{"grpc-listen", "grpc.listen", "gRPC API address (default 127.0.0.1:50051)"},
	{"http-listen", "http.listen", "health endpoints address, empty to disable (default 127.0.0.1:8080)"},
	{"nats-listen", "nats.listen", "NATS address for native clients, empty for none (default none; needs credentials)"},
	{"log-level", "log_level", "debug, info, warn or error (default info)"},
	{"log-format", "log_format", "auto, text or json (default auto)"},
}

func (o *serveOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.configFile, "config", "c", configFileFromEnv(), "YAML config file (env JSCTL_CONFIG); see config.example.yaml")
	o.overrides = map[string]*string{}
	for _, f := range serveFlags {
		o.overrides[f.key] = fs.String(f.flag, "", f.usage)
	}
}

// flagValues returns the config keys set by flags given on the command line.
func (o *serveOptions) flagValues(fs *pflag.FlagSet) map[string]any {
	out := map[string]any{}
	for _, f := range serveFlags {
		if fs.Changed(f.flag) {
			out[f.key] = *o.overrides[f.key]
		}
	}
	return out
}

func newServeCommand() *cobra.Command {
	o := &serveOptions{}
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the appliance: embedded JetStream, ledger and gRPC API",
		Long: `Run jsctl: an in-process NATS JetStream server with file storage, the bbolt
ledger and the gRPC API, all under the data dir. SIGINT or SIGTERM stops it
cleanly: health goes NOT_SERVING, in-flight calls finish, then NATS and the
ledger close.

Settings come from flags, then JSCTL_* environment variables (JSCTL_GRPC_LISTEN
sets grpc.listen), then --config, then defaults.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := LoadConfig(o.configFile, os.Environ(), o.flagValues(c.Flags()))
			if err != nil {
				return err
			}
			log := newLogger(cfg.LogLevel, cfg.LogFormat, c.ErrOrStderr())
			tuneRuntime(cfg, log)
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return NewApp(cfg, log).Run(ctx)
		},
	}
	o.AddFlags(c.Flags())
	return c
}

// runContext is the context commands use when cobra gives none.
func runContext(c *cobra.Command) context.Context {
	if ctx := c.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
