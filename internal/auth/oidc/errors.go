package oidc

import (
	"context"
	"errors"
	"net"
	"net/url"

	"golang.org/x/oauth2"
)

// Errors a caller tells apart with errors.Is to show the person a page they
// can act on. Every error this package returns wraps exactly one of them.
var (
	// ErrProviderDown: the provider could not be reached or answered with
	// a server error (discovery, token endpoint, keys). Trying again later
	// may work.
	ErrProviderDown = errors.New("sign-in provider is unavailable")
	// ErrBadState: the callback does not belong to the sign-in this
	// browser started: wrong or replayed state or nonce, or a code that
	// was already used or has expired. Starting again fixes it.
	ErrBadState = errors.New("sign-in request does not match or has expired")
	// ErrEmailNotVerified: the provider does not vouch for the email
	// address (email_verified is missing or false).
	ErrEmailNotVerified = errors.New("email address is not verified by the provider")
	// ErrDomainMismatch: hosted_domain is configured and the token's hd
	// claim is missing or different.
	ErrDomainMismatch = errors.New("account is not in the required hosted domain")
	// ErrInvalidToken: the ID token failed verification (signature, issuer,
	// audience, expiry, malformed claims).
	ErrInvalidToken = errors.New("identity token is not valid")
	// ErrRefreshRejected: the provider refused the refresh token (revoked,
	// expired, or the user was disabled): the session must end.
	ErrRefreshRejected = errors.New("provider refused to renew the sign-in")
)

// classifyTokenError maps an error from the token endpoint to one of the
// package's errors: a refusal (4xx, such as invalid_grant) becomes refused,
// anything else (network, 5xx, timeouts) ErrProviderDown.
func classifyTokenError(err error, refused error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500 {
		return refused
	}
	return ErrProviderDown
}

// isNetworkError reports whether err is a transport failure rather than a
// verification failure.
func isNetworkError(err error) bool {
	var ne net.Error
	var ue *url.Error
	return errors.As(err, &ne) || errors.As(err, &ue) || errors.Is(err, context.DeadlineExceeded)
}
