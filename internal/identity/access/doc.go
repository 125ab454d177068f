// Package access is the one place that decides whether a signed-in request
// may pass: the routes, the admin console, the admin API and the account
// page all ask Rule.Check and answer a refusal with Refuse.
//
// A Rule says what a page asks (who, how fresh a sign-in, a second
// factor); Check takes the user and the session the request already
// carries (request.Info), so nothing is fetched again; the Decision names
// the first condition that failed and, for an allow list, which members
// were tried.
package access
