package cmd

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version, Commit and BuildDate are stamped at build time (the Dockerfile
// does it):
//
//	go build -ldflags "-X github.com/jsctl/jsctl/cmd.Version=v1.2.3 \
//	  -X github.com/jsctl/jsctl/cmd.Commit=$(git rev-parse HEAD) \
//	  -X github.com/jsctl/jsctl/cmd.BuildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
//
// Left empty, they come from the module's build info (the VCS stamp of a
// plain go build in a git checkout), else "devel" and "unknown".
var Version, Commit, BuildDate string

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
	version, commit, date = Version, orUnknown(Commit), orUnknown(BuildDate)
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return orDevel(version), commit, date
	}
	if version == "" {
		version = bi.Main.Version
	}
	if Commit != "" || BuildDate != "" {
		return orDevel(version), orUnknown(Commit), orUnknown(BuildDate)
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

func orUnknown(v string) string {
	if v == "" {
		return "unknown"
	}
	return v
}
