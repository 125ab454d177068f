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
	u, err := d.User(ctx, userID)
	if err != nil {
		return nil, err
	}
	list, err := d.Store.ListPasskeys(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	for _, p := range list {
		if p.ID != id {
			continue
		}
		if err := d.Store.DeletePasskey(ctx, u.ID, p.ID); errors.Is(err, store.ErrNotFound) {
			break // removed meanwhile
		} else if err != nil {
			return nil, err
		}
		d.audit(ctx, a, "passkey.remove", u.Email, fmt.Sprintf("%q for %s", p.Name, p.RPID))
		return p, nil
	}
	return nil, refusal(NotFound, "admin.no_passkey", "no such passkey")
}

// ResetPasskeys removes every passkey of a user (an admin's reset, when a
// device is lost): they sign in with their password and their other
// second factor, if any, and may add passkeys again. It reports how many
// were removed.
func (d *Directory) ResetPasskeys(ctx context.Context, a Actor, id string) (*store.User, int, error) {
	u, err := d.User(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	n, err := d.Store.DeleteUserPasskeys(ctx, u.ID)
	if err != nil {
		return nil, 0, err
	}
	d.audit(ctx, a, "passkey.reset", u.Email, fmt.Sprintf("%d passkey(s) removed", n))
	return u, n, nil
}
