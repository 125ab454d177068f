package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/auth/pat"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/store"
)

func init() { subcommands = append(subcommands, newTokensCommand) }

// maxTokenTTL bounds a personal access token's life: a token for a script
// should be rotated at least yearly.
const maxTokenTTL = 366 * 24 * time.Hour

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
			if err != nil || d <= 0 || d > maxTokenTTL {
				return fmt.Errorf("invalid --ttl %q: give a duration between 1m and 366d, such as 720h or 30d", ttl)
			}
			if name != "" { // the label is optional here
				var err error
				if name, err = directory.CleanTokenName(name); err != nil {
					return fmt.Errorf("--name: %w", err)
				}
			}
			return c.run(cmd, func(ctx context.Context) error {
				u, err := c.user(ctx, args[0])
				if err != nil {
					return err
				}
				if u.Disabled {
					return fmt.Errorf("user %s is disabled: enable it first (moat users enable)", u.Email)
				}
				token, hash := pat.New()
				now := time.Now()
				t := &store.Token{Hash: hash, UserID: u.ID, Name: name, CreatedAt: now, ExpiresAt: now.Add(d)}
				if err := c.st.CreateToken(ctx, t); err != nil {
					return err
				}
				if err := c.audit(ctx, "token.create", u.Email, fmt.Sprintf("token %s %q expires %s", t.ID, name, timeString(t.ExpiresAt))); err != nil {
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
			return c.run(cmd, func(ctx context.Context) error {
				u, err := c.user(ctx, args[0])
				if err != nil {
					return err
				}
				all, err := c.st.ListTokens(ctx, u.ID)
				if err != nil {
					return err
				}
				var toks []*store.Token
				for _, t := range all {
					if t.Kind == store.TokenPersonal { // not set-password links
						toks = append(toks, t)
					}
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
				err := c.st.RevokeToken(ctx, args[0], time.Now())
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("no token %s (see moat tokens list EMAIL)", args[0])
				}
				if err != nil {
					return err
				}
				if err := c.audit(ctx, "token.revoke", args[0], "token "+args[0]); err != nil {
					return err
				}
				fmt.Fprintf(c.out, "Token %s revoked.\n", args[0])
				return nil
			})
		},
	}
}
