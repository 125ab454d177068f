package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/usage"
)

func init() { subcommands = append(subcommands, newUsageCommand) }

// clock is the usage command's clock (a fixed time in golden tests).
var clock = time.Now

// Usage views and formats.
var (
	usageViews   = []string{"all", "days", "users", "sessions"}
	usageFormats = []string{"table", "csv", "json"}
)

func newUsageCommand() *cobra.Command {
	var cfgPath, route, since, format, view string
	var limit int
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "Show who used which route: users per day, top users, recent sessions",
		Long: `Show who used which route, from the store every instance writes to:
sign-ins, distinct users and sessions per day and route, the most active
users and the most recent sessions. Days are UTC days.

--format csv prints one table: choose it with --view (days by default).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !slices.Contains(usageFormats, format) {
				return fmt.Errorf("invalid --format %q: use table, csv or json", format)
			}
			if view == "" {
				view = "all"
				if format == "csv" {
					view = "days"
				}
			}
			if !slices.Contains(usageViews, view) {
				return fmt.Errorf("invalid --view %q: use all, days, users or sessions", view)
			}
			if format == "csv" && view == "all" {
				return fmt.Errorf("--format csv prints one table: add --view days, users or sessions")
			}
			if limit <= 0 {
				return fmt.Errorf("invalid --limit %d: use a positive number", limit)
			}
			now := clock().UTC()
			from, err := parseSince(since, now)
			if err != nil {
				return err
			}
			if from.IsZero() || !from.Before(now) {
				return fmt.Errorf("invalid --since %q: give a period back from now, such as 7d", since)
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
			rep, err := usage.Load(ctx, st, usage.Query{Route: route, Since: from, Until: now, TopUsers: limit, RecentSessions: limit})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch format {
			case "json":
				return writeUsageJSON(out, rep, view)
			case "csv":
				return writeUsageCSV(out, rep, view)
			}
			return writeUsageTable(out, rep, view)
		},
	}
	configFlag(cmd, &cfgPath)
	cmd.Flags().StringVar(&route, "route", "", "only this route (its host and path prefix, as moat check lists it)")
	cmd.Flags().StringVar(&since, "since", "7d", "the period: this long back from now (24h, 7d, 90d) or since this RFC 3339 time")
	cmd.Flags().StringVar(&format, "format", "table", "table, csv or json")
	cmd.Flags().StringVar(&view, "view", "", "all, days, users or sessions (csv: one of the last three; default days)")
	cmd.Flags().IntVar(&limit, "limit", usage.DefaultRecentSessions, "at most this many top users and recent sessions")
	return cmd
}

func writeUsageJSON(w io.Writer, rep *usage.Report, view string) error {
	switch view {
	case "days":
		return writeJSON(w, rep.Days)
	case "users":
		return writeJSON(w, rep.TopUsers)
	case "sessions":
		return writeJSON(w, rep.RecentSessions)
	}
	return writeJSON(w, rep)
}

// csvCell keeps a text cell from being read as a formula by a
// spreadsheet (OWASP's CSV injection advice): a leading =, +, -, @, tab
// or carriage return gets a quote before it.
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func writeUsageCSV(w io.Writer, rep *usage.Report, view string) error {
	cw := csv.NewWriter(w)
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	switch view {
	case "days":
		_ = cw.Write([]string{"day", "route", "users", "sign_ins", "sessions", "active_minutes"})
		for _, d := range rep.Days {
			_ = cw.Write([]string{d.Day, csvCell(d.Route), n(int64(d.Users)), n(d.SignIns), n(int64(d.Sessions)), n(d.ActiveMinutes)})
		}
	case "users":
		_ = cw.Write([]string{"email", "active_minutes", "days", "sessions", "connected_seconds", "last_seen"})
		for _, u := range rep.TopUsers {
			_ = cw.Write([]string{csvCell(u.Email), n(u.ActiveMinutes), n(int64(u.Days)), n(int64(u.Sessions)), n(u.ConnectedSeconds), timeString(u.LastSeen)})
		}
	case "sessions":
		_ = cw.Write([]string{"start", "end", "route", "email", "provider", "connected_seconds", "active_minutes"})
		for _, s := range rep.RecentSessions {
			_ = cw.Write([]string{timeString(s.Start), timeString(s.End), csvCell(s.Route), csvCell(s.Email), csvCell(s.Provider), n(s.ConnectedSeconds), n(s.ActiveMinutes)})
		}
	}
	cw.Flush()
	return cw.Error()
}

// usageTime is a time as the usage table prints it.
func usageTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04")
}

func writeUsageTable(w io.Writer, rep *usage.Report, view string) error {
	what := "every route"
	if rep.Route != "" {
		what = rep.Route
	}
	fmt.Fprintf(w, "Usage of %s from %s to %s UTC\n", what, usageTime(rep.Since), usageTime(rep.Until))
	if len(rep.Days) == 0 && len(rep.RecentSessions) == 0 {
		fmt.Fprintln(w, "no usage recorded in this period")
		return nil
	}
	t := rep.Totals
	fmt.Fprintf(w, "%d users, %d sign-ins, %d sessions, %d active minutes\n", t.Users, t.SignIns, t.Sessions, t.ActiveMinutes)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if view == "all" || view == "days" {
		fmt.Fprintln(tw, "\nDAY\tROUTE\tUSERS\tSIGN-INS\tSESSIONS\tACTIVE MIN")
		for _, d := range rep.Days {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\n", d.Day, d.Route, d.Users, d.SignIns, d.Sessions, d.ActiveMinutes)
		}
	}
	if view == "all" || view == "users" {
		fmt.Fprintln(tw, "\nTOP USERS\tACTIVE MIN\tDAYS\tSESSIONS\tCONNECTED\tLAST SEEN")
		for _, u := range rep.TopUsers {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", u.Email, u.ActiveMinutes, u.Days, u.Sessions,
				usage.Span(time.Duration(u.ConnectedSeconds)*time.Second), usageTime(u.LastSeen))
		}
	}
	if view == "all" || view == "sessions" {
		fmt.Fprintln(tw, "\nRECENT SESSIONS\tROUTE\tVIA\tSTART\tLAST USE\tLENGTH\tCONNECTED\tACTIVE MIN")
		for _, s := range rep.RecentSessions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", s.Email, s.Route, orDash(s.Provider), usageTime(s.Start), usageTime(s.End),
				s.Length(), s.ConnectedTime(), s.ActiveMinutes)
		}
	}
	return tw.Flush()
}
