package admin

import (
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/moat-dev/moat/internal/chart"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/usage"
	"github.com/moat-dev/moat/internal/web"
)

// usagePeriods are the periods the usage page offers, in days; the first
// is the default.
var usagePeriods = []int{30, 7, 90}

// usageView is the usage page (issue 14): who used which route.
type usageView struct {
	Off        bool
	Retention  int // days
	Route      string
	Period     int
	Periods    []int
	Routes     []string
	Report     *usage.Report
	UsersChart template.HTML
	TopChart   template.HTML
	Sessions   []usageSessionRow
	// ActiveHours is the period's active minutes in hours, one decimal.
	ActiveHours string
}

type usageSessionRow struct {
	usage.Session
	StartText, EndText string
}

// pageUsage shows active users per day per route, the top users and the
// recent sessions of a period (?period=7|30|90 days, ?route=).
func (c *Console) pageUsage(w http.ResponseWriter, r *http.Request) error {
	lang := web.Lang(r)
	v := &usageView{Off: c.cfg.Usage.Off, Retention: int(c.cfg.Usage.Retention.D() / (24 * time.Hour)), Periods: usagePeriods, Period: usagePeriods[0]}
	for _, rt := range c.cfg.Routes {
		if !slices.Contains(v.Routes, rt.Name()) {
			v.Routes = append(v.Routes, rt.Name())
		}
	}
	p := page{Section: "usage", Usage: v}
	if s := queryParam(r, "period"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || !slices.Contains(usagePeriods, n) {
			p.Error = web.T(lang, "admin.usage.bad_period")
			c.render(w, r, http.StatusBadRequest, "admin-usage.html", "admin.usage.title", p)
			return nil
		}
		v.Period = n
	}
	v.Route = queryParam(r, "route")
	now := c.o.Now().UTC()
	// The period is whole days: today and the days before it.
	since := store.UsageDayStart(store.UsageDayNumber(now) - int64(v.Period) + 1)
	rep, err := usage.Load(r.Context(), c.st, usage.Query{Route: v.Route, Since: since, Until: now})
	if err != nil {
		return err
	}
	v.Report = rep
	v.ActiveHours = strconv.FormatFloat(float64(rep.Totals.ActiveMinutes)/60, 'f', 1, 64)
	// A route that is gone from the configuration keeps its usage.
	for _, name := range rep.Routes() {
		if !slices.Contains(v.Routes, name) {
			v.Routes = append(v.Routes, name)
		}
	}
	if v.Route != "" && !slices.Contains(v.Routes, v.Route) {
		v.Routes = append(v.Routes, v.Route)
	}
	x, series := rep.ActiveUsers()
	if len(series) > 0 {
		v.UsersChart = template.HTML(chart.Lines(web.T(lang, "admin.usage.users_chart"), x, series)) // chart escapes every text
	}
	var bars []chart.Bar
	byMinutes := slices.ContainsFunc(rep.TopUsers, func(u usage.User) bool { return u.ActiveMinutes > 0 })
	for _, u := range rep.TopUsers {
		b := chart.Bar{Label: u.Email, Value: float64(u.Days), Note: web.T(lang, "admin.usage.user_note", u.ActiveMinutes, u.Days, u.Sessions)}
		if byMinutes {
			b.Value = float64(u.ActiveMinutes)
		}
		bars = append(bars, b)
	}
	if len(bars) > 0 {
		v.TopChart = template.HTML(chart.Bars(web.T(lang, "admin.usage.top_chart"), bars))
	}
	for _, s := range rep.RecentSessions {
		v.Sessions = append(v.Sessions, usageSessionRow{Session: s, StartText: fmtTime(s.Start), EndText: fmtTime(s.End)})
	}
	c.render(w, r, http.StatusOK, "admin-usage.html", "admin.usage.title", p)
	return nil
}
