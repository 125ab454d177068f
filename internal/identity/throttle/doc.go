// Package throttle is moat's brute-force protection for every way of
// signing in: passwords, second-factor codes (TOTP and recovery codes), and
// any factor added later. One Service holds the rules; the sign-in pages
// call Begin before checking what was typed, then Failed or Passed.
//
// The rules (issue 12, finding 2: ten wrong passwords from anywhere used to
// lock an account for everyone, its owner included):
//
//   - A browser that signed in to the account before carries a device
//     cookie (internal/identity/device) and has a budget of its own
//     (Limits.Device), whatever else happens to the account: an attack
//     from elsewhere cannot lock its owner out (OWASP's device cookies).
//   - Every other client ("unknown devices") has a budget per account
//     (Limits.Pair, one address or IPv6 /64 against one account) and one
//     across accounts (Limits.Client), and they all share the account's
//     slow-down (Limits.Account): past a few failures, one attempt per
//     delay, the delay doubling with each failure up to a maximum. A
//     slow-down never locks.
//   - Only a distributed attack — many failures from many clients —
//     locks the account's sign-in from unknown devices (Limits.Lock), for
//     a bounded time or until an administrator unlocks it (console, API or
//     `moat users unlock`, through internal/directory). Browsers with a
//     device cookie still sign in.
//
// The counts live in an attempts.Counter: Redis when counters: is set,
// else the store (with SQLite they survive a restart, with PostgreSQL every
// instance shares them), so the budget is the same for one instance or
// ten, and a reload, which keeps the process, resets nothing. Where a
// budget must be exact across instances, the attempt is counted before it
// is checked (attempts.Counter.Fail returns its rank); so is each turn of
// the slow-down, which only the first of racing attempts gets.
package throttle
