package config

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Usage defaults.
const (
	DefaultUsageRetention     = 90 * 24 * time.Hour
	DefaultUsageFlushInterval = 10 * time.Second
)

// Usage says how long moat keeps who used which route (issue 14), or,
// written `usage: off`, that it keeps nothing.
type Usage struct {
	// Off is set by `usage: off`: nothing is counted or written.
	Off bool `yaml:"-"`
	// Retention is how long usage is kept (default 90d), in whole days.
	Retention Duration `yaml:"retention"`
	// FlushInterval is how often each instance writes what it counted to
	// the store (default 10s).
	FlushInterval Duration `yaml:"flush_interval"`
}

// UnmarshalYAML reads `usage: off` or a mapping of the keys above.
func (u *Usage) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if n.Value != "off" {
			return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: usage: write off, or a mapping such as {retention: 90d}, not %q", n.Line, n.Value)}}
		}
		*u = Usage{Off: true}
		return nil
	}
	type plain Usage // without this method, so Decode does not recurse
	return n.Decode((*plain)(u))
}

func applyUsageDefaults(u *Usage) {
	if u.Off {
		return
	}
	defDur(&u.Retention, DefaultUsageRetention)
	defDur(&u.FlushInterval, DefaultUsageFlushInterval)
}

func (v *validator) validateUsage() {
	u := v.cfg.Usage
	if u.Off {
		return
	}
	if r := u.Retention.D(); r < 24*time.Hour || r%(24*time.Hour) != 0 {
		v.errorAt("usage.retention", "usage is kept by whole days: write a number of days such as 30d or 90d")
	}
	if f := u.FlushInterval.D(); f < time.Second || f > 10*time.Minute {
		v.errorAt("usage.flush_interval", "must be between 1s and 10m")
	}
}
