package cmd

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X github.com/jsctl/jsctl/cmd.Version=v1.2.3";
// otherwise it comes from the module's build info.
var Version = ""

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version, commit and build date",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			version, commit, date := buildInfo()
			_, err := fmt.Fprintf(c.OutOrStdout(), "jsctl %s\ncommit %s\nbuilt %s\n", version, commit, date)
			return err
		},
	}
}

func buildInfo() (version, commit, date string) {
	version, commit, date = Version, "unknown", "unknown"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return orDevel(version), commit, date
	}
	if version == "" {
		version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.time":
			date = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				commit += "-dirty"
			}
		}
	}
	return orDevel(version), commit, date
}

func orDevel(v string) string {
	if v == "" || v == "(devel)" {
		return "devel"
	}
	return v
}
