package oidctest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// storage is the provider's in-memory database: the op.Storage that
// zitadel's OpenID Provider runs on. zitadel does the protocol (discovery,
// PKCE, code and refresh grants, signing); storage only remembers things.
type storage struct {
	mu           sync.Mutex
	users        map[string]*User // by subject
	client       *client
	authRequests map[string]*authRequest
	codes        map[string]string // code -> auth request id
	tokens       map[string]*accessToken
	refresh      map[string]*refreshToken
	key          signingKey
	failRefresh  int // refreshes still to refuse
	refreshes    int // successful refresh grants, for tests
}

// authRequest is one /authorize request until its code is redeemed.
type authRequest struct {
	id          string
	created     time.Time
	clientID    string
	redirectURI string
	state       string
	nonce       string
	scopes      []string
	respType    oidc.ResponseType
	respMode    oidc.ResponseMode
	challenge   *oidc.CodeChallenge
	subject     string
	authTime    time.Time
	done        bool
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return []string{"pwd"} }
func (a *authRequest) GetAudience() []string                 { return []string{a.clientID} }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.respType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.respMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

type accessToken struct {
	id        string
	clientID  string
	subject   string
	scopes    []string
	expiresAt time.Time
}

type refreshToken struct {
	token    string
	clientID string
	subject  string
	scopes   []string
	audience []string
	authTime time.Time
	amr      []string
}

// refreshRequest is a refresh grant in progress.
type refreshRequest struct{ *refreshToken }

func (r *refreshRequest) GetAMR() []string                 { return r.amr }
func (r *refreshRequest) GetAudience() []string            { return r.audience }
func (r *refreshRequest) GetAuthTime() time.Time           { return r.authTime }
func (r *refreshRequest) GetClientID() string              { return r.clientID }
func (r *refreshRequest) GetScopes() []string              { return r.scopes }
func (r *refreshRequest) GetSubject() string               { return r.subject }
func (r *refreshRequest) SetCurrentScopes(scopes []string) { r.scopes = scopes }

type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct{ *signingKey }

func (k publicKey) ID() string                         { return k.id }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.key.PublicKey }

// testKey is one RSA key for every provider of the test process:
// generating a 2048-bit key takes longer than the rest of a sign-in.
var testKey = sync.OnceValues(func() (*rsa.PrivateKey, error) {
	return rsa.GenerateKey(rand.Reader, 2048)
})

func newStorage(c *client) (*storage, error) {
	key, err := testKey()
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	return &storage{
		users:        map[string]*User{},
		client:       c,
		authRequests: map[string]*authRequest{},
		codes:        map[string]string{},
		tokens:       map[string]*accessToken{},
		refresh:      map[string]*refreshToken{},
		key:          signingKey{id: randomID(), key: key},
	}, nil
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// userByEmail finds a user; the caller holds mu.
func (s *storage) userByEmail(email string) *User {
	for _, u := range s.users {
		if strings.EqualFold(u.Email, email) {
			return u
		}
	}
	return nil
}

// checkLogin completes auth request id for the user with these
// credentials.
func (s *storage) checkLogin(id, email, password string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.authRequests[id]
	if !ok {
		return errors.New("unknown or expired sign-in request")
	}
	u := s.userByEmail(email)
	if u == nil || u.Password != password {
		return errors.New("wrong email or password")
	}
	if u.disabled {
		return errors.New("this account is disabled")
	}
	req.subject = u.Subject
	req.authTime = time.Now()
	req.done = true
	return nil
}

func (s *storage) CreateAuthRequest(_ context.Context, r *oidc.AuthRequest, userID string) (op.AuthRequest, error) {
	if len(r.Prompt) == 1 && r.Prompt[0] == oidc.PromptNone {
		return nil, oidc.ErrLoginRequired()
	}
	req := &authRequest{
		id:          randomID(),
		created:     time.Now(),
		clientID:    r.ClientID,
		redirectURI: r.RedirectURI,
		state:       r.State,
		nonce:       r.Nonce,
		scopes:      r.Scopes,
		respType:    r.ResponseType,
		respMode:    r.ResponseMode,
		subject:     userID,
	}
	if r.CodeChallenge != "" {
		req.challenge = &oidc.CodeChallenge{Challenge: r.CodeChallenge, Method: r.CodeChallengeMethod}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authRequests[req.id] = req
	return req, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.authRequests[id]
	if !ok {
		return nil, errors.New("auth request not found")
	}
	return req, nil
}

func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("code invalid or already used")
	}
	return s.AuthRequestByID(ctx, id)
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.authRequests, id)
	for code, rid := range s.codes {
		if rid == id {
			delete(s.codes, code)
		}
	}
	return nil
}

func (s *storage) newAccessToken(clientID, subject string, scopes []string) *accessToken {
	t := &accessToken{id: randomID(), clientID: clientID, subject: subject, scopes: scopes, expiresAt: time.Now().Add(5 * time.Minute)}
	s.tokens[t.id] = t
	return t
}

func (s *storage) CreateAccessToken(_ context.Context, r op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clientID := s.client.id
	if ar, ok := r.(*authRequest); ok {
		clientID = ar.clientID
	}
	t := s.newAccessToken(clientID, r.GetSubject(), r.GetScopes())
	return t.id, t.expiresAt, nil
}

func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, r op.TokenRequest, current string) (string, string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[r.GetSubject()]
	if u == nil || u.disabled {
		return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("user is disabled")
	}
	var rt *refreshToken
	switch req := r.(type) {
	case *authRequest:
		rt = &refreshToken{clientID: req.clientID, subject: req.subject, scopes: req.scopes, audience: req.GetAudience(), authTime: req.authTime, amr: req.GetAMR()}
	case *refreshRequest:
		old, ok := s.refresh[current]
		if !ok {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token is not valid")
		}
		delete(s.refresh, current) // rotation: each refresh token works once
		rt = old
		rt.scopes = req.scopes
		s.refreshes++
	default:
		return "", "", time.Time{}, errors.New("unsupported token request")
	}
	rt.token = randomID()
	s.refresh[rt.token] = rt
	at := s.newAccessToken(rt.clientID, rt.subject, rt.scopes)
	return at.id, rt.token, at.expiresAt, nil
}

func (s *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failRefresh > 0 {
		s.failRefresh--
		return nil, oidc.ErrInvalidGrant().WithDescription("refresh refused by the test")
	}
	rt, ok := s.refresh[token]
	if !ok {
		return nil, oidc.ErrInvalidGrant().WithDescription("refresh token is not valid")
	}
	if u := s.users[rt.subject]; u == nil || u.disabled {
		return nil, oidc.ErrInvalidGrant().WithDescription("user is disabled")
	}
	cp := *rt
	return &refreshRequest{&cp}, nil
}

func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revokeSubjectLocked(userID)
	return nil
}

// revokeSubjectLocked forgets every token of subject; the caller holds mu.
func (s *storage) revokeSubjectLocked(subject string) {
	for id, t := range s.tokens {
		if t.subject == subject {
			delete(s.tokens, id)
		}
	}
	for id, t := range s.refresh {
		if t.subject == subject {
			delete(s.refresh, id)
		}
	}
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, clientID, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[token]
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	return rt.subject, rt.token, nil
}

func (s *storage) RevokeToken(_ context.Context, tokenOrID, userID, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, tokenOrID)
	delete(s.refresh, tokenOrID)
	return nil
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return &s.key, nil }

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{&s.key}}, nil
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id != s.client.id {
		return nil, fmt.Errorf("unknown client %q", id)
	}
	return s.client, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	if id != s.client.id || secret != s.client.secret {
		return errors.New("wrong client id or secret")
	}
	return nil
}

// SetUserinfoFromScopes is deprecated in zitadel; SetUserinfoFromRequest
// does the work.
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's claims, groups included.
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, r op.IDTokenRequest, scopes []string) error {
	return s.setUserinfo(info, r.GetSubject(), scopes)
}

func (s *storage) setUserinfo(info *oidc.UserInfo, subject string, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[subject]
	if u == nil {
		return errors.New("user not found")
	}
	for _, sc := range scopes {
		switch sc {
		case oidc.ScopeOpenID:
			info.Subject = u.Subject
			if len(u.Groups) > 0 {
				info.AppendClaims(GroupsClaim, append([]string(nil), u.Groups...))
			}
			if u.HostedDomain != "" {
				info.AppendClaims("hd", u.HostedDomain)
			}
		case oidc.ScopeEmail:
			info.Email = u.Email
			info.EmailVerified = oidc.Bool(u.EmailVerified)
		case oidc.ScopeProfile:
			info.Name = u.Name
		}
	}
	return nil
}

func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, subject, origin string) error {
	s.mu.Lock()
	t, ok := s.tokens[tokenID]
	s.mu.Unlock()
	if !ok || time.Now().After(t.expiresAt) {
		return errors.New("access token is not valid")
	}
	return s.setUserinfo(info, t.subject, t.scopes)
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	s.mu.Lock()
	t, ok := s.tokens[tokenID]
	s.mu.Unlock()
	if !ok || time.Now().After(t.expiresAt) || t.clientID != clientID {
		return errors.New("access token is not valid")
	}
	info := new(oidc.UserInfo)
	if err := s.setUserinfo(info, t.subject, t.scopes); err != nil {
		return err
	}
	resp.SetUserInfo(info)
	resp.Scope = t.scopes
	resp.ClientID = t.clientID
	resp.Expiration = oidc.FromTime(t.expiresAt)
	return nil
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("jwt profile is not supported")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("jwt profile is not supported")
}

func (s *storage) Health(context.Context) error { return nil }

var (
	_ op.Storage                   = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest = (*storage)(nil)
)
