package account

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/moat-dev/moat/internal/auth/passkey"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/identity/access"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/web"
)

// passkeyRow is one passkey as the account page lists it.
type passkeyRow struct {
	ID, Name, Host, Created, LastUsed string
	// Here: it signs for the host this page is on.
	Here bool
}

// passkeyInfo fills in the user's passkeys and what this page may do with
// them: passkeys are for password sign-ins (moat's own directory), and
// are made for the host the page is on.
func (a *Account) passkeyInfo(ctx context.Context, r *http.Request, p *page) error {
	wo := whoOf(r)
	rp, err := passkey.RPOf(r.Host, "")
	if err == nil {
		p.Host = rp.ID
	}
	list, err := a.dir.Passkeys(ctx, wo.user.ID)
	if err != nil {
		return err
	}
	for _, k := range list {
		row := passkeyRow{ID: k.ID, Name: k.Name, Host: k.RPID, Created: fmtTime(k.CreatedAt), LastUsed: fmtTime(k.LastUsed), Here: k.RPID == p.Host}
		if row.Here {
			p.PasskeysHere++
		}
		p.Passkeys = append(p.Passkeys, row)
	}
	p.VerifyPasskey = p.PasskeysHere > 0 && !wo.session.MFA
	p.Recent = a.recentSignIn(wo.session)
	p.PasskeyName = web.Platform(r.UserAgent())
	p.CanAddPasskey = p.Password && p.Host != "" && (wo.session.MFA || !p.Enrolled && len(list) == 0)
	return nil
}

// passkeyCeremony runs the account page's passkey endpoints, each a JSON
// call of the page's script with the CSRF token in X-CSRF-Token:
// /passkeys/add/begin and …/finish add a passkey, /passkeys/verify/…
// prove this session's second factor with one. Both are bound to the
// session.
func (a *Account) passkeyCeremony(w http.ResponseWriter, r *http.Request) error {
	purpose, step := r.PathValue("purpose"), r.PathValue("step")
	if purpose != "add" && purpose != "verify" || step != "begin" && step != "finish" {
		return web.NewProblem(http.StatusNotFound, "not_found")
	}
	if err := passkey.CheckToken(a.csrf, r); err != nil {
		return err
	}
	in, err := passkey.ReadRequest(w, r)
	if err != nil {
		return err
	}
	wo := whoOf(r)
	if wo.session.Provider != "password" {
		return web.NewProblem(http.StatusForbidden, "passkey.sso")
	}
	p, err := a.base(r)
	if err != nil {
		return err
	}
	rp, err := passkey.RPOf(r.Host, "")
	if err != nil {
		return passkey.Problem(err)
	}
	ctx := r.Context()
	u, err := a.dir.User(ctx, wo.user.ID)
	if err != nil {
		return err
	}
	binding := passkey.Binding("session", wo.session.IDHash)
	if purpose == "verify" {
		return a.passkeyVerify(w, r, rp, u, binding, step, in)
	}
	switch {
	case !a.recentSignIn(wo.session):
		// Adding a passkey outlives the session: a forgotten open
		// browser must not be enough.
		return web.NewProblem(http.StatusUnauthorized, "passkey.reauth", int(a.reauthLimit().Minutes()))
	case !p.CanAddPasskey:
		return web.NewProblem(http.StatusForbidden, "passkey.verify_first")
	}
	if step == "begin" {
		b, err := a.o.Passkeys.BeginRegistration(ctx, rp, u, binding)
		if err != nil {
			return passkey.Problem(err)
		}
		web.WriteJSON(w, http.StatusOK, b)
		return nil
	}
	name, err := passkey.CleanName(in.Name, p.PasskeyName)
	if err != nil {
		return passkey.Problem(err)
	}
	if _, err := a.o.Passkeys.FinishRegistration(ctx, rp, u, binding, in.State, in.Credential, name, clientIP(r)); err != nil {
		return passkey.Problem(err)
	}
	// Like a confirmed TOTP, a first passkey is this session's second
	// factor.
	if err := a.markVerified(ctx, wo.session); err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, map[string]string{"redirect": a.after(r, "passkey_added")})
	return nil
}

// passkeyVerify proves this session's second factor with a passkey made
// for this host.
func (a *Account) passkeyVerify(w http.ResponseWriter, r *http.Request, rp passkey.RP, u *store.User, binding, step string, in passkey.Request) error {
	ctx := r.Context()
	if step == "begin" {
		b, err := a.o.Passkeys.BeginAssertion(ctx, rp, u, binding, codeSource(r))
		if err != nil {
			return passkey.Problem(err)
		}
		web.WriteJSON(w, http.StatusOK, b)
		return nil
	}
	if _, err := a.o.Passkeys.FinishAssertion(ctx, rp, u, binding, in.State, in.Credential, codeSource(r)); err != nil {
		return passkey.Problem(err)
	}
	if err := a.markVerified(ctx, whoOf(r).session); err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, map[string]string{"redirect": a.after(r, "mfa_verified")})
	return nil
}

// after is where a passkey ceremony of the account page leads: the page's
// return_to, else the account page saying what was done.
func (a *Account) after(r *http.Request, done string) string {
	if rt := r.URL.Query().Get("return_to"); rt != "" {
		return access.SafeReturnTo(rt)
	}
	return Prefix + "?done=" + done
}

// postRemovePasskey removes one of the user's passkeys, from a session
// that passed its second factor.
func (a *Account) postRemovePasskey(w http.ResponseWriter, r *http.Request) error {
	if err := a.form(w, r); err != nil {
		return err
	}
	wo := whoOf(r)
	list, err := a.dir.Passkeys(r.Context(), wo.user.ID)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(list, func(p *store.Passkey) bool { return p.ID == r.PathValue("id") }) {
		return web.NewProblem(http.StatusNotFound, "not_found") // not yours: as if it did not exist
	}
	if !wo.session.MFA {
		http.Redirect(w, r, Prefix+"/mfa?return_to="+Prefix, http.StatusSeeOther)
		return nil
	}
	if _, err := a.dir.RemovePasskey(r.Context(), a.actor(r), wo.user.ID, r.PathValue("id")); err != nil {
		if errors.Is(err, directory.ErrNotFound) {
			return web.NewProblem(http.StatusNotFound, "not_found") // not yours: as if it did not exist
		}
		return err
	}
	http.Redirect(w, r, Prefix+"?done=passkey_removed", http.StatusSeeOther)
	return nil
}
