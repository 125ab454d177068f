package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/store"
)

func init() { subcommands = append(subcommands, newAuditCommand) }

// parseSince reads --since: a duration back from now (90m, 24h, 7d) or an
// RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("invalid --since %q: use a duration such as 24h or 7d, or a time such as 2026-01-02T15:04:05Z", s)
}

// auditJSON is one event as `moat audit --json` prints it.
type auditJSON struct {
	ID       int64  `json:"id"`
	Time     string `json:"time"`
	Actor    string `json:"actor"`
	Action   string `json:"action"`
	Subject  string `json:"subject,omitempty"`
	ClientIP string `json:"client_ip,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

func newAuditCommand() *cobra.Command {
	var cfgPath, since, user, action string
	var limit int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "List the audit log, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			if limit < 0 {
				return fmt.Errorf("invalid --limit %d", limit)
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			st, _, err := openStore(ctx, cfgPath)
			if err != nil {
				return err
			}
			defer st.Close()
			f := store.AuditFilter{Since: from, Action: action, Limit: limit}
			if user != "" {
				f.Subject = store.NormalizeEmail(user)
			}
			events, err := st.ListAudit(ctx, f)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				list := make([]auditJSON, 0, len(events))
				for _, e := range events {
					list = append(list, auditJSON{e.ID, timeString(e.Time), e.Actor, e.Action, e.Subject, e.ClientIP, e.Detail})
				}
				return writeJSON(out, list)
			}
			if len(events) == 0 {
				fmt.Fprintln(out, "no audit events match")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tACTOR\tACTION\tSUBJECT\tCLIENT IP\tDETAIL")
			for _, e := range events {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", timeString(e.Time), orDash(e.Actor), e.Action, orDash(e.Subject), orDash(e.ClientIP), orDash(e.Detail))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if limit > 0 && len(events) == limit {
				fmt.Fprintf(out, "(the newest %d; raise --limit or narrow with --since for more)\n", limit)
			}
			return nil
		},
	}
	configFlag(cmd, &cfgPath)
	cmd.Flags().StringVar(&since, "since", "", "only events since this long ago (24h, 7d) or this RFC 3339 time")
	cmd.Flags().StringVar(&user, "user", "", "only events about this email")
	cmd.Flags().StringVar(&action, "action", "", "only this action, such as login.failure or user.create")
	cmd.Flags().IntVar(&limit, "limit", 200, "at most this many events (0: all)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
