package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/store"
)

// resetPasskeysCommand removes every passkey of a user, through the
// directory (its audit event, as the console's).
func (c *usersCLI) resetPasskeysCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "reset-passkeys EMAIL",
		Short: "Remove every passkey of a user (a lost device); they sign in with their password and may add passkeys again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runOnUser(cmd, args[0], func(ctx context.Context, u *store.User) error {
				_, n, err := c.dir.ResetPasskeys(ctx, cli, u.ID)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.out, "%d passkey(s) of %s removed\n", n, u.Email)
				return nil
			})
		},
	}
}

// passkeySummary says how many passkeys a user has and for which hosts.
func (c *usersCLI) passkeySummary(ctx context.Context, userID string) (int, string, error) {
	list, err := c.dir.Passkeys(ctx, userID)
	if err != nil {
		return 0, "", err
	}
	if len(list) == 0 {
		return 0, "none", nil
	}
	s := fmt.Sprint(len(list)) + ":"
	for i, p := range list {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprintf(" %q for %s", p.Name, p.RPID)
	}
	return len(list), s, nil
}
