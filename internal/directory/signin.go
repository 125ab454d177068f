package directory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/moat-dev/moat/internal/store"
)

// What a sign-in asks of the directory: the account of a person an
// identity provider vouched for, a password changed by its owner, and the
// audit events that change nothing (signed in, refused, signed out).

// ErrDisabled refuses a sign-in of a user who is disabled in moat.
var ErrDisabled = errors.New("user is disabled in moat")

// ErrStalePassword refuses a password change whose current password is no
// longer the user's: an admin reset it, or another change won, after it
// was checked.
var ErrStalePassword = errors.New("the password changed since it was checked")

// recordTimeout bounds the write of an audit event that changes nothing,
// which outlives the request that caused it.
const recordTimeout = 5 * time.Second

// ProviderUser returns moat's account of the person an identity provider
// vouched for as email, creating it at their first sign-in (with their
// name, without a password, audited as user.create), so moat's own groups,
// disabling and sessions work for them as for everyone. A disabled account
// is refused with ErrDisabled. a is the sign-in (client address, request
// id); the person is the actor.
func (d *Directory) ProviderUser(ctx context.Context, a Actor, email, name, provider string) (*store.User, error) {
	a.Name = email
	for range 2 {
		u, err := d.Store.GetUserByEmail(ctx, email)
		if err == nil {
			if u.Disabled {
				return nil, ErrDisabled
			}
			return u, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		err = d.commit(ctx, a, func(c *change) error {
			u = &store.User{Email: email, Name: name}
			if err := c.tx.CreateUser(ctx, u); err != nil {
				return err
			}
			return c.audit(ctx, "user.create", u.Email, "first sign-in with "+provider)
		})
		if err == nil {
			return u, nil
		}
		if !errors.Is(err, store.ErrDuplicate) {
			return nil, err
		}
		// Created meanwhile by another sign-in: read it.
	}
	return nil, errors.New("user could not be created")
}

// KeepProviderGroups returns the groups a provider named for the user with
// email that X-Moat-User-Groups can carry (ProviderGroups), and logs the
// ones it drops, so an app never reads a group the provider did not name
// (issue 12 #5).
func (d *Directory) KeepProviderGroups(provider, email string, groups []string) []string {
	kept, dropped := ProviderGroups(groups)
	if len(dropped) > 0 {
		d.logger().Warn("dropped groups an identity provider named that X-Moat-User-Groups cannot carry", "provider", provider, "user", email, "groups", dropped)
	}
	return kept
}

// ChangePassword gives u, who has just proved their current password
// (u.PasswordHash), the password next, by the policy (a
// *password.PolicyError says why not), and ends every session of u, the
// one the change was made in included, in one transaction with its audit
// event. When the password is no longer the one checked (an admin's reset
// in between wins) nothing changes and the error is ErrStalePassword. It
// returns the user as changed and how many sessions ended.
func (d *Directory) ChangePassword(ctx context.Context, a Actor, u *store.User, next string) (*store.User, int, error) {
	// Hash before the transaction: it must not hold the database while
	// argon2 runs.
	hash, err := d.Passwords.Hash(ctx, next, u.Email)
	if err != nil {
		return nil, 0, err
	}
	n := 0
	err = d.commit(ctx, a, func(c *change) error {
		set, err := c.tx.SetPasswordHash(ctx, u.ID, u.PasswordHash, hash, false)
		if err != nil {
			return err
		}
		if !set {
			return ErrStalePassword
		}
		if n, err = c.revokeAll(ctx, u.ID); err != nil {
			return err
		}
		return c.audit(ctx, "password.change", u.Email, fmt.Sprintf("%d session(s) ended", n))
	})
	if err != nil {
		return nil, 0, err
	}
	changed := *u
	changed.PasswordHash, changed.MustChangePassword = hash, false
	return &changed, n, nil
}

// Record writes an event that changes nothing in the directory (a
// sign-in, a refused one, a sign-out, a session its provider no longer
// vouches for) to the audit log, and its line to the log. Unlike a change
// it never fails its caller: an event the store cannot take is logged as
// an error. An actor without a name is "anonymous". Never pass a
// password, session id or token.
func (d *Directory) Record(ctx context.Context, a Actor, action, subject, detail string) {
	if a.Name == "" {
		a.Name = "anonymous"
	}
	d.logger().Info("audit", "action", action, "actor", a.Name, "user", subject, "client_ip", a.ClientIP, "request_id", a.RequestID, "detail", detail)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	e := &store.AuditEvent{Time: d.now(), Actor: a.Name, Action: action, Subject: subject, ClientIP: a.ClientIP, Detail: detail}
	if err := d.Store.Audit(ctx, e); err != nil {
		d.logger().Error("write audit event", "action", action, "request_id", a.RequestID, "err", err)
	}
}
