// Package assertion tells the app who the user is: it signs X-Moat-Assertion
// (ES256 JWT) and, in IAP-compatible mode, X-Goog-IAP-JWT-Assertion with
// the store's signing keys, publishes them as /_moat/jwks.json, rotates
// them, and sets the identity headers on each proxied request (the
// proxy's SetIdentity hook).
package assertion
