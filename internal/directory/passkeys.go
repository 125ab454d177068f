package directory

import (
	"context"
	"errors"
	"fmt"

	"github.com/moat-dev/moat/internal/store"
)

// Passkeys lists a user's passkeys (every host's), oldest first.
func (d *Directory) Passkeys(ctx context.Context, userID string) ([]*store.Passkey, error) {
	return d.Store.ListPasskeys(ctx, userID)
}

// RemovePasskey removes one passkey of the user userID: a person removing
// their own, from the account page. Another user's passkey is NotFound,
// as if it did not exist.
func (d *Directory) RemovePasskey(ctx context.Context, a Actor, userID, id string) (*store.Passkey, error) {
	var removed *store.Passkey
	err := d.commit(ctx, a, func(c *change) error {
		u, err := c.user(ctx, userID)
		if err != nil {
			return err
		}
		list, err := c.tx.ListPasskeys(ctx, u.ID)
		if err != nil {
			return err
		}
		for _, p := range list {
			if p.ID != id {
				continue
			}
			if err := c.tx.DeletePasskey(ctx, u.ID, p.ID); errors.Is(err, store.ErrNotFound) {
				break // removed meanwhile
			} else if err != nil {
				return err
			}
			removed = p
			return c.audit(ctx, "passkey.remove", u.Email, fmt.Sprintf("%q for %s", p.Name, p.RPID))
		}
		return refusal(NotFound, "admin.no_passkey", "no such passkey")
	})
	if err != nil {
		return nil, err
	}
	return removed, nil
}

// ResetPasskeys removes every passkey of a user (an admin's reset, when a
// device is lost): they sign in with their password and their other
// second factor, if any, and may add passkeys again. It reports how many
// were removed.
func (d *Directory) ResetPasskeys(ctx context.Context, a Actor, id string) (*store.User, int, error) {
	var u *store.User
	n := 0
	err := d.commit(ctx, a, func(c *change) error {
		var err error
		if u, err = c.user(ctx, id); err != nil {
			return err
		}
		if n, err = c.tx.DeleteUserPasskeys(ctx, u.ID); err != nil {
			return err
		}
		return c.audit(ctx, "passkey.reset", u.Email, fmt.Sprintf("%d passkey(s) removed", n))
	})
	if err != nil {
		return nil, 0, err
	}
	return u, n, nil
}
