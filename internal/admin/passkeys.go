package admin

import (
	"context"
	"net/http"

	"github.com/moat-dev/moat/internal/store"
)

// PasskeyJSON is a passkey as the API shows it: never its key.
type PasskeyJSON struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Host is the relying party: the only host the passkey signs for.
	Host      string `json:"host"`
	CreatedAt string `json:"created_at"`
	LastUsed  string `json:"last_used,omitempty"`
}

func passkeyJSON(p *store.Passkey) PasskeyJSON {
	return PasskeyJSON{ID: p.ID, Name: p.Name, Host: p.RPID, CreatedAt: timeString(p.CreatedAt), LastUsed: timeString(p.LastUsed)}
}

// userPasskeys lists a user's passkeys, oldest first.
func (c *Console) userPasskeys(ctx context.Context, id string) ([]PasskeyJSON, error) {
	u, err := c.user(ctx, id)
	if err != nil {
		return nil, err
	}
	list, err := c.dir.Passkeys(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	out := []PasskeyJSON{}
	for _, p := range list {
		out = append(out, passkeyJSON(p))
	}
	return out, nil
}

func (c *Console) resetPasskeys(ctx context.Context, r *http.Request, id string) (*store.User, int, error) {
	u, n, err := c.dir.ResetPasskeys(ctx, actor(r), id)
	return u, n, answer(err)
}

func (c *Console) postResetPasskeys(w http.ResponseWriter, r *http.Request) error {
	if err := c.form(w, r); err != nil {
		return err
	}
	if _, _, err := c.resetPasskeys(r.Context(), r, r.PathValue("id")); err != nil {
		return err
	}
	http.Redirect(w, r, userURL(r.PathValue("id"), "passkeys_reset"), http.StatusSeeOther)
	return nil
}

func (a *api) apiListPasskeys(w http.ResponseWriter, r *http.Request) error {
	list, err := a.c.userPasskeys(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"passkeys": list})
	return nil
}

func (a *api) apiResetPasskeys(w http.ResponseWriter, r *http.Request) error {
	if err := a.apiChange(w, r, nil); err != nil {
		return err
	}
	u, n, err := a.c.resetPasskeys(r.Context(), r, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": a.c.userJSON(r.Context(), u), "passkeys_removed": n})
	return nil
}
