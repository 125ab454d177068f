package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/fanout"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/store"
)

func init() { subcommands = append(subcommands, newUsersCommand) }

// cliActor is the audit actor of every change made from the command line.
const cliActor = "cli"

// openStore loads the configuration at cfgPath and opens its store: the
// store: DSN, or SQLite at data_dir/moat.db. It works while serve runs.
func openStore(ctx context.Context, cfgPath string) (store.Store, *config.Config, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, nil, err
	}
	st, err := store.Open(ctx, cfg.StoreDSN())
	if err != nil {
		return nil, nil, err
	}
	return st, cfg, nil
}

// usersCLI is the state the users subcommands share.
type usersCLI struct {
	cfgPath string
	st      store.Store
	cfg     *config.Config
	out     io.Writer
	// dir is the directory's operations, with the console's rules: the
	// CLI makes no change past them (issue 11). It changes the store, then
	// tells the running instances through the fan-out (announcer).
	dir *directory.Directory
}

// run opens the store and the fan-out, runs fn and closes them.
func (c *usersCLI) run(cmd *cobra.Command, fn func(ctx context.Context) error) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	st, cfg, err := openStore(ctx, c.cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The sign-in throttle's counts, where the running instances keep them
	// (Redis or the store); opening it connects to nothing yet. Never this
	// process's memory: what the CLI reads or lifts must be what every
	// instance reads, or an error.
	th, err := throttle.Open(cfg.Counters, "closed", st, quiet)
	if err != nil {
		return err
	}
	defer th.Close()
	tell, err := openAnnouncer(cfg, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	defer tell.close()
	c.st, c.cfg, c.out = st, cfg, cmd.OutOrStdout()
	c.dir = &directory.Directory{Store: st, AdminGroup: cfg.Identity.AdminGroup, Throttle: th,
		Passwords: directory.Passwords{Limiter: password.NewLimiter(1, 0), Policy: password.Policy{MinLength: cfg.Identity.Passwords.MinLength}},
		Logger:    quiet,
		// What a change ended reaches the running instances through
		// the fan-out, once the change is stored.
		Ended: func(e directory.Ended) {
			for _, ev := range e.Events() {
				tell.publish(ctx, ev)
			}
		}}
	return fn(ctx)
}

// announcer tells the running instances of a change the CLI made, through
// the fan-out of the configuration's store or counters (PostgreSQL
// NOTIFY, Redis PUBLISH), so it takes effect everywhere within a second.
// On SQLite without Redis there is no bus: the instance follows by its
// poll, within seconds.
type announcer struct {
	bus    *fanout.Bus
	stderr io.Writer
}

// announceTimeout bounds the CLI's publish.
const announceTimeout = 5 * time.Second

func openAnnouncer(cfg *config.Config, stderr io.Writer) (*announcer, error) {
	bus, err := fanout.OpenPublisher(cfg.StoreDSN(), cfg.Counters, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, err
	}
	return &announcer{bus: bus, stderr: stderr}, nil
}

// publish sends e after the change it announces is stored; when it cannot,
// it says so, as the change itself is made.
func (a *announcer) publish(ctx context.Context, e fanout.Event) {
	ctx, cancel := context.WithTimeout(ctx, announceTimeout)
	defer cancel()
	if err := a.bus.Publish(ctx, e); err != nil {
		fmt.Fprintf(a.stderr, "note: the change is stored, but running instances could not be told at once (%v); they follow within seconds\n", err)
	}
}

func (a *announcer) close() { a.bus.Close() }

func newUsersCommand() *cobra.Command {
	c := &usersCLI{}
	cmd := &cobra.Command{
		Use:   "users",
		Short: "Manage the built-in user directory (works while serve runs)",
		Args:  cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVarP(&c.cfgPath, "config", "c", "moat.yaml", "configuration file")
	cmd.AddCommand(c.addCommand(), c.listCommand(), c.showCommand(),
		c.disableCommand(true), c.disableCommand(false), c.deleteCommand(),
		c.setGroupsCommand(), c.resetPasswordCommand(), c.revokeSessionsCommand(), c.unlockCommand(), c.importCommand(), c.resetPasskeysCommand())
	return cmd
}

// cli is the audit actor of every change made from the command line.
var cli = directory.Actor{Name: cliActor}

// runOnUser runs fn, as run does, on the user with the given email.
func (c *usersCLI) runOnUser(cmd *cobra.Command, email string, fn func(ctx context.Context, u *store.User) error) error {
	return c.run(cmd, func(ctx context.Context) error {
		u, err := c.user(ctx, email)
		if err != nil {
			return err
		}
		return fn(ctx, u)
	})
}

// user fetches a user by email with a clear error for an unknown one.
func (c *usersCLI) user(ctx context.Context, email string) (*store.User, error) {
	u, err := c.dir.UserByEmail(ctx, email)
	if errors.Is(err, directory.ErrNotFound) {
		return nil, fmt.Errorf("%w (see moat users list)", err)
	}
	return u, err
}

// readPassword reads one line from r, bounded by password.MaxLength.
func readPassword(r io.Reader) (string, error) {
	br := bufio.NewReader(io.LimitReader(r, password.MaxLength+3))
	line, err := br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if len(line) > password.MaxLength {
		return "", fmt.Errorf("weak password: the password is too long: at most %d bytes", password.MaxLength)
	}
	if line == "" {
		return "", errors.New("no password on stdin")
	}
	return line, nil
}

// stdinPassword reads the password of --password-stdin, or "" without it.
func stdinPassword(cmd *cobra.Command, fromStdin bool) (string, error) {
	if !fromStdin {
		return "", nil
	}
	return readPassword(cmd.InOrStdin())
}

// weak words a password the policy refused as the CLI always has.
func weak(err error) error {
	var pe *password.PolicyError
	if errors.As(err, &pe) {
		return fmt.Errorf("weak password: %w", err)
	}
	return err
}

func printOneTime(w io.Writer, email, pw string) {
	fmt.Fprintf(w, "one-time password for %s (shown once; it must be changed at the first sign-in):\n%s\n", email, pw)
}

func (c *usersCLI) addCommand() *cobra.Command {
	var name string
	var groups []string
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "add EMAIL",
		Short: "Create a user; without --password-stdin, print a one-time password",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.run(cmd, func(ctx context.Context) error {
				pw, err := stdinPassword(cmd, fromStdin)
				if err != nil {
					return err
				}
				u, out, err := c.dir.CreateUser(ctx, cli, directory.NewUser{Email: args[0], Name: name, Groups: groups, Password: pw})
				if err != nil {
					return weak(err)
				}
				fmt.Fprintf(c.out, "created user %s (id %s)\n", u.Email, u.ID)
				if out != nil {
					printOneTime(c.out, u.Email, out.Password)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "display name")
	cmd.Flags().StringArrayVar(&groups, "group", nil, "group to add the user to (repeatable)")
	cmd.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of standard input")
	return cmd
}

// userJSON is what list and show print with --json: never the hash.
type userJSON struct {
	ID                 string   `json:"id"`
	Email              string   `json:"email"`
	Name               string   `json:"name"`
	Groups             []string `json:"groups"`
	Disabled           bool     `json:"disabled"`
	MustChangePassword bool     `json:"must_change_password"`
	HasPassword        bool     `json:"has_password"`
	CreatedAt          string   `json:"created_at"`
	UpdatedAt          string   `json:"updated_at"`
	LastLoginAt        string   `json:"last_login_at,omitempty"`
	Sessions           *int     `json:"live_sessions,omitempty"`
	MFA                *bool    `json:"mfa_enrolled,omitempty"`
	Passkeys           *int     `json:"passkeys,omitempty"`
	SignInLockedUntil  string   `json:"signin_locked_until,omitempty"`
}

// lockText says whether sign-in from unknown devices is locked, and for
// how much longer.
func lockText(left time.Duration) string {
	if left <= 0 {
		return "none"
	}
	return fmt.Sprintf("new devices locked for %s more (moat users unlock)", left.Round(time.Second))
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func toJSON(u *store.User) userJSON {
	groups := u.Groups
	if groups == nil {
		groups = []string{}
	}
	return userJSON{ID: u.ID, Email: u.Email, Name: u.Name, Groups: groups, Disabled: u.Disabled,
		MustChangePassword: u.MustChangePassword, HasPassword: u.PasswordHash != "",
		CreatedAt: timeString(u.CreatedAt), UpdatedAt: timeString(u.UpdatedAt), LastLoginAt: timeString(u.LastLoginAt)}
}

func status(u *store.User) string {
	switch {
	case u.Disabled:
		return "disabled"
	case u.MustChangePassword:
		return "must-change-password"
	case u.PasswordHash == "":
		return "sso"
	}
	return "active"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *usersCLI) listCommand() *cobra.Command {
	var asJSON bool
	var group string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.run(cmd, func(ctx context.Context) error {
				users, _, err := c.st.ListUsers(ctx, store.UserFilter{Group: group})
				if err != nil {
					return err
				}
				if asJSON {
					out := make([]userJSON, 0, len(users))
					for _, u := range users {
						out = append(out, toJSON(u))
					}
					return writeJSON(c.out, out)
				}
				if len(users) == 0 {
					fmt.Fprintln(c.out, "no users yet: add one with moat users add EMAIL")
					return nil
				}
				tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "EMAIL\tNAME\tGROUPS\tSTATUS\tLAST SIGN-IN")
				for _, u := range users {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Email, orDash(u.Name), orDash(strings.Join(u.Groups, ",")), status(u), orDash(timeString(u.LastLoginAt)))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&group, "group", "", "only members of this group")
	return cmd
}

func (c *usersCLI) showCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show EMAIL",
		Short: "Show one user",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runOnUser(cmd, args[0], func(ctx context.Context, u *store.User) error {
				sessions, err := c.st.ListSessions(ctx, u.ID)
				if err != nil {
					return err
				}
				_, terr := c.st.GetTOTP(ctx, u.ID)
				if terr != nil && !errors.Is(terr, store.ErrNotFound) {
					return terr
				}
				keys, keyList, err := c.passkeySummary(ctx, u.ID)
				if err != nil {
					return err
				}
				locked, err := c.dir.SignInLock(ctx, u)
				if err != nil {
					return err
				}
				j := toJSON(u)
				n, mfa := len(sessions), terr == nil
				j.Sessions, j.MFA, j.Passkeys = &n, &mfa, &keys
				if locked > 0 {
					j.SignInLockedUntil = timeString(time.Now().Add(locked).Truncate(time.Second))
				}
				if asJSON {
					return writeJSON(c.out, j)
				}
				tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
				for _, kv := range [][2]string{
					{"email", j.Email}, {"id", j.ID}, {"name", orDash(j.Name)}, {"groups", orDash(strings.Join(j.Groups, ","))},
					{"status", status(u)}, {"second factor", map[bool]string{true: "enrolled", false: "none"}[mfa]}, {"passkeys", keyList},
					{"live sessions", fmt.Sprint(n)}, {"created", j.CreatedAt}, {"updated", j.UpdatedAt},
					{"last sign-in", orDash(j.LastLoginAt)}, {"sign-in lock", lockText(locked)},
				} {
					fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// disableCommand is `disable` (which also ends the user's sessions) or
// `enable`.
func (c *usersCLI) disableCommand(disable bool) *cobra.Command {
	use, short := "enable EMAIL", "Let a disabled user sign in again"
	if disable {
		use, short = "disable EMAIL", "Stop a user from signing in and end their sessions"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runOnUser(cmd, args[0], func(ctx context.Context, u *store.User) error {
				u, n, err := c.dir.SetDisabled(ctx, cli, u.ID, disable)
				if err != nil {
					return err
				}
				if !disable {
					fmt.Fprintf(c.out, "enabled %s\n", u.Email)
					return nil
				}
				fmt.Fprintf(c.out, "disabled %s; %d session(s) ended\n", u.Email, n)
				return nil
			})
		},
	}
}

func (c *usersCLI) deleteCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete EMAIL --yes",
		Short: "Delete a user, ending their sessions (cannot be undone)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return fmt.Errorf("deleting %s cannot be undone: add --yes", store.NormalizeEmail(args[0]))
			}
			return c.runOnUser(cmd, args[0], func(ctx context.Context, u *store.User) error {
				u, n, err := c.dir.DeleteUser(ctx, cli, u.ID)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.out, "deleted %s; %d session(s) ended\n", u.Email, n)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm the deletion")
	return cmd
}

func (c *usersCLI) setGroupsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "set-groups EMAIL [GROUP]...",
		Short: "Replace a user's groups (none: remove from every group)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runOnUser(cmd, args[0], func(ctx context.Context, u *store.User) error {
				// The console's group-name rule holds here too (issue 11).
				u, err := c.dir.UpdateUser(ctx, cli, u.ID, nil, args[1:], true)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.out, "%s is now in: %s\n", u.Email, orDash(strings.Join(u.Groups, ",")))
				return nil
			})
		},
	}
}

func (c *usersCLI) resetPasswordCommand() *cobra.Command {
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "reset-password EMAIL",
		Short: "Set a new password (one-time unless --password-stdin) and end the user's sessions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runOnUser(cmd, args[0], func(ctx context.Context, u *store.User) error {
				pw, err := stdinPassword(cmd, fromStdin)
				if err != nil {
					return err
				}
				u, out, n, err := c.dir.ResetPassword(ctx, cli, u.ID, directory.ModePassword, pw)
				if err != nil {
					return weak(err)
				}
				fmt.Fprintf(c.out, "password of %s reset; %d session(s) ended\n", u.Email, n)
				if out != nil {
					printOneTime(c.out, u.Email, out.Password)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of standard input")
	return cmd
}

func (c *usersCLI) revokeSessionsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke-sessions EMAIL",
		Short: "End every session of a user now (open WebSockets close within seconds)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runOnUser(cmd, args[0], func(ctx context.Context, u *store.User) error {
				_, n, err := c.dir.RevokeUserSessions(ctx, cli, u.ID)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.out, "%d session(s) of %s ended\n", n, u.Email)
				return nil
			})
		},
	}
}

func (c *usersCLI) unlockCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "unlock EMAIL",
		Short: "Lift the lock a distributed attack put on a user's sign-in from new devices",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runOnUser(cmd, args[0], func(ctx context.Context, u *store.User) error {
				u, left, err := c.dir.UnlockSignIn(ctx, cli, u.ID)
				if err != nil {
					return fmt.Errorf("unlock %s: %w (is counters: reachable from here?)", store.NormalizeEmail(args[0]), err)
				}
				if left > 0 {
					fmt.Fprintf(c.out, "unlocked sign-in of %s (the lock had %s left); new devices may try again\n", u.Email, left.Round(time.Second))
					return nil
				}
				fmt.Fprintf(c.out, "sign-in of %s was not locked; its failed attempts are forgotten\n", u.Email)
				return nil
			})
		},
	}
}
