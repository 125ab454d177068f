package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/store"
)

func init() { subcommands = append(subcommands, newTokensCommand) }

func newTokensCommand() *cobra.Command {
	c := &usersCLI{}
	cmd := &cobra.Command{
		Use:   "tokens",
		Short: "Manage personal access tokens for scripts (Authorization: Bearer on routes with bearer: true)",
		Args:  cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVarP(&c.cfgPath, "config", "c", "moat.yaml", "configuration file")
	cmd.AddCommand(tokensCreateCommand(c), tokensListCommand(c), tokensRevokeCommand(c))
	return cmd
}

func tokensCreateCommand(c *usersCLI) *cobra.Command {
	var name, ttl string
	cmd := &cobra.Command{
		Use:   "create EMAIL",
		Short: "Create a token for a user and print it (once: only its hash is kept)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := config.ParseDuration(ttl)
			if err != nil || d <= 0 || d > directory.MaxTokenTTL {
				return fmt.Errorf("invalid --ttl %q: give a duration between 1m and 366d, such as 720h or 30d", ttl)
			}
			return c.runOnUser(cmd, args[0], func(ctx context.Context, u *store.User) error {
				token, t, err := c.dir.CreateToken(ctx, cli, u.ID, name, d)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.out, "Token %s for %s (expires %s). Copy it now, it is not shown again:\n%s\n",
					t.ID, u.Email, timeString(t.ExpiresAt), token)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "label, such as the script that uses it")
	cmd.Flags().StringVar(&ttl, "ttl", "720h", "lifetime, at most 366d")
	return cmd
}

func tokensListCommand(c *usersCLI) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list EMAIL",
		Short: "List a user's tokens (never the tokens themselves)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runOnUser(cmd, args[0], func(ctx context.Context, u *store.User) error {
				toks, err := c.dir.Tokens(ctx, u.ID) // never set-password links
				if err != nil {
					return err
				}
				now := time.Now()
				if asJSON {
					out := make([]tokenJSON, 0, len(toks))
					for _, t := range toks {
						out = append(out, tokenJSON{ID: t.ID, Name: t.Name, Status: tokenStatus(t, now),
							CreatedAt: timeString(t.CreatedAt), ExpiresAt: timeString(t.ExpiresAt),
							RevokedAt: timeString(t.RevokedAt), LastUsed: timeString(t.LastUsed)})
					}
					return writeJSON(c.out, out)
				}
				if len(toks) == 0 {
					fmt.Fprintf(c.out, "%s has no tokens.\n", u.Email)
					return nil
				}
				tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tCREATED\tEXPIRES\tLAST USED")
				for _, t := range toks {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, orDash(t.Name), tokenStatus(t, now),
						timeString(t.CreatedAt), orDash(timeString(t.ExpiresAt)), orDash(timeString(t.LastUsed)))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

type tokenJSON struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	CreatedAt string `json:"created_at"`
	ExpiresAt string `json:"expires_at,omitempty"`
	RevokedAt string `json:"revoked_at,omitempty"`
	LastUsed  string `json:"last_used,omitempty"`
}

func tokenStatus(t *store.Token, now time.Time) string {
	switch {
	case !t.RevokedAt.IsZero():
		return "revoked"
	case !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt):
		return "expired"
	}
	return "active"
}

func tokensRevokeCommand(c *usersCLI) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token at once (see moat tokens list for ids)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.run(cmd, func(ctx context.Context) error {
				if _, err := c.dir.RevokeToken(ctx, cli, "", args[0]); err != nil {
					if errors.Is(err, directory.ErrNotFound) {
						return fmt.Errorf("%w (see moat tokens list EMAIL)", err)
					}
					return err
				}
				fmt.Fprintf(c.out, "Token %s revoked.\n", args[0])
				return nil
			})
		},
	}
}
