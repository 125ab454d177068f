// Package login is moat's sign-in pages under /_moat/: the password form
// and the password change, sign-out, single sign-on with a provider (start
// and callback), the second step of a password sign-in (a code or a
// passkey) and the sign-in with a passkey alone. Pages only: each reads its
// form through the one CSRF guard (csrf.Guard.ReadForm) and answers a
// refusal through the one error path (a web.Problem, rendered by
// web.Fail); who may pass a route is internal/identity/access's, the
// session internal/identity/session's, the brute-force budgets
// internal/identity/throttle's, and every change to a user goes through
// internal/directory.
//
// Pages are built for one configuration (New) on the state of the process,
// which a reload keeps: the sessions, the throttle and its Hold, the
// device cookies, the second factors, the hashing limiter, and the Flows
// of sign-ins with a provider. A callback's state is spent in the store
// (store.Once), once for the whole cluster: it cannot be replayed against
// another instance, nor after a reload or a restart. internal/auth
// assembles the pages for the server.
package login
