// Package directory holds the rules of moat's user directory, each in one
// place, for every caller alike: the admin console, the admin API, the
// account page, the sign-in and the CLI. Email addresses, group names
// (moat's own, and those an identity provider reports), one-time
// passwords, personal access token names and set-password links are
// checked or made here. It knows nothing of HTTP.
package directory
