package cmd

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/jsctl/jsctl/rpc"
)

func newTokenCommand() *cobra.Command {
	c := &cobra.Command{Use: "token", Short: "Manage bearer tokens"}
	var roles []string
	var name string
	create := &cobra.Command{
		Use:   "create",
		Short: "Make a new bearer token and print the config line that accepts it",
		Long: `Print a new random token and the entry to add under auth.tokens in the
config. The config keeps only the token's SHA-256; the token itself is shown
once. Roles: publish (NewEvent, PublishEvents), read (EventStatus,
WatchEvent, ListEvents), consume (Subscribe), admin (Redrive and everything).`,
		Example: `  jsctl token create --role publish,read --name shop`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if len(roles) == 0 {
				return fmt.Errorf("--role: give at least one of %s", strings.Join(rpc.Roles, ", "))
			}
			for _, r := range roles {
				if !slices.Contains(rpc.Roles, r) {
					return fmt.Errorf("--role %q: want %s", r, strings.Join(rpc.Roles, ", "))
				}
			}
			raw := make([]byte, 32)
			if _, err := rand.Read(raw); err != nil {
				return err
			}
			token := "jsctl_" + base64.RawURLEncoding.EncodeToString(raw)
			out := c.OutOrStdout()
			fmt.Fprintf(out, "token (shown once; give it to the client as --token or JSCTL_TOKEN):\n  %s\n\n", token)
			fmt.Fprintf(out, "add to the config under auth.tokens:\n  - {name: %q, sha256: %q, roles: [%s]}\n", name, rpc.HashToken(token), strings.Join(roles, ", "))
			return nil
		},
	}
	create.Flags().StringSliceVar(&roles, "role", nil, "roles: publish, read, consume, admin (comma-separated)")
	create.Flags().StringVar(&name, "name", "client", "a name for the token, shown in errors and logs")
	c.AddCommand(create)
	return c
}
