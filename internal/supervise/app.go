package supervise

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// TrustedUserHeaders is the value of Streamlit's server.trustedUserHeaders
// (1.49 and later) that fills st.user from the identity headers moat sends
// on signed-in routes: st.user.email, st.user.sub (moat's user id),
// st.user.groups (comma-separated) and st.user.name (percent-encoded:
// urllib.parse.unquote it; see assertion.NameHeader). moat deletes any
// X-Moat-* header a client sends, so behind moat these can be trusted; the
// app must not be reachable any other way.
const TrustedUserHeaders = `{"X-Moat-User-Email": "email", "X-Moat-User-Id": "sub", "X-Moat-User-Groups": "groups", "X-Moat-User-Name": "name"}`

// StreamlitHealthPath is Streamlit's health endpoint under its base path.
const StreamlitHealthPath = "/_stcore/health"

// App is an app moat runs for one backend.
type App struct {
	// Backend is the backend's name.
	Backend string
	// Argv and Dir are the command as configured.
	Argv []string
	Dir  string
	// Port is the loopback port of the backend's url.
	Port int
	// Prefixes are the path prefixes of the routes to the app ("" for /).
	Prefixes []string
	// HealthPath is the backend's health_path ("" if none).
	HealthPath string
	// Issuer, JWKSURL and Audiences let the app verify X-Moat-Assertion
	// (MOAT_ISSUER, MOAT_JWKS_URL, MOAT_AUDIENCE).
	Issuer    string
	JWKSURL   string
	Audiences []string
}

// Spec is how the app runs: its command (for Streamlit, with the flags it
// needs behind moat: loopback address and port, headless, base path and
// trusted user headers) and its environment: PORT, and what verifying the
// assertion takes. An error says what in the command to change.
func (a App) Spec() (Spec, error) {
	if len(a.Argv) == 0 || a.Argv[0] == "" {
		return Spec{}, fmt.Errorf("the command is empty")
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Port))
	s := Spec{Name: a.Backend, Argv: slices.Clone(a.Argv), Dir: a.Dir, Addr: addr}
	s.Env = []string{"PORT=" + strconv.Itoa(a.Port)}
	if a.Issuer != "" {
		s.Env = append(s.Env, "MOAT_ISSUER="+a.Issuer)
	}
	if a.JWKSURL != "" {
		s.Env = append(s.Env, "MOAT_JWKS_URL="+a.JWKSURL)
	}
	if len(a.Audiences) > 0 {
		s.Env = append(s.Env, "MOAT_AUDIENCE="+strings.Join(a.Audiences, ","))
	}
	health := a.HealthPath
	if at := streamlitRun(a.Argv); at > 0 {
		base, err := basePath(a.Prefixes)
		if err != nil {
			return Spec{}, err
		}
		flags, err := a.streamlitFlags(base)
		if err != nil {
			return Spec{}, err
		}
		s.Argv = slices.Insert(s.Argv, at, flags...)
		if health == "" {
			health = base + StreamlitHealthPath
		}
	}
	if health != "" {
		s.HealthURL = "http://" + addr + health
	}
	return s, nil
}

// IsStreamlit reports whether argv runs `streamlit run` (directly or as
// python -m streamlit).
func IsStreamlit(argv []string) bool { return streamlitRun(argv) > 0 }

// streamlitRun returns the index just after "run" in `streamlit run …` or
// `python -m streamlit run …`, where moat's flags go (before the script,
// whose own arguments follow it), or 0.
func streamlitRun(argv []string) int {
	if len(argv) >= 2 && filepath.Base(argv[0]) == "streamlit" && argv[1] == "run" {
		return 2
	}
	if len(argv) >= 4 && strings.HasPrefix(filepath.Base(argv[0]), "python") && argv[1] == "-m" && argv[2] == "streamlit" && argv[3] == "run" {
		return 4
	}
	return 0
}

// streamlitOwned are the Streamlit options moat sets; a command that sets
// one itself would fight moat over it.
var streamlitOwned = []string{"--server.address", "--server.port", "--server.baseUrlPath", "--server.trustedUserHeaders", "--server.headless"}

func (a App) streamlitFlags(base string) ([]string, error) {
	for _, arg := range a.Argv {
		name, _, _ := strings.Cut(arg, "=")
		if slices.Contains(streamlitOwned, name) {
			return nil, fmt.Errorf("the command sets %s, which moat sets itself (it runs Streamlit on 127.0.0.1:%d): remove it", name, a.Port)
		}
	}
	flags := []string{
		"--server.address", "127.0.0.1",
		"--server.port", strconv.Itoa(a.Port),
		"--server.headless", "true",
		"--server.trustedUserHeaders", TrustedUserHeaders,
		"--browser.gatherUsageStats", "false",
	}
	if base != "" {
		flags = append(flags, "--server.baseUrlPath", strings.TrimPrefix(base, "/"))
	}
	return flags, nil
}

// basePath is the one path prefix (without its trailing slash) of the
// routes to a Streamlit app, which serves under one base path.
func basePath(prefixes []string) (string, error) {
	base := ""
	for i, p := range prefixes {
		p = strings.TrimSuffix(p, "/")
		if i > 0 && p != base {
			return "", fmt.Errorf("Streamlit serves under one base path, but this backend's routes use the path prefixes %q and %q: give each prefix its own backend and command", base+"/", p+"/")
		}
		base = p
	}
	return base, nil
}
