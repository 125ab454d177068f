package supervise

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/identity/assertion"
)

func TestSpecAddsStreamlitsFlagsBeforeTheScript(t *testing.T) {
	flags := "--server.address 127.0.0.1 --server.port 8601 --server.headless true --server.trustedUserHeaders " + TrustedUserHeaders + " --browser.gatherUsageStats false"
	for _, tc := range []struct {
		name     string
		argv     []string
		prefixes []string
		want     string
		health   string
	}{
		{"streamlit run", []string{"streamlit", "run", "app.py"}, []string{""},
			"streamlit run " + flags + " app.py", "http://127.0.0.1:8601/_stcore/health"},
		{"the script's own arguments stay after it", []string{"/usr/local/bin/streamlit", "run", "app.py", "--", "--region", "jp"}, nil,
			"/usr/local/bin/streamlit run " + flags + " app.py -- --region jp", "http://127.0.0.1:8601/_stcore/health"},
		{"python -m streamlit", []string{"python3", "-m", "streamlit", "run", "app.py"}, nil,
			"python3 -m streamlit run " + flags + " app.py", "http://127.0.0.1:8601/_stcore/health"},
		{"under a path prefix", []string{"streamlit", "run", "app.py"}, []string{"/dash/", "/dash"},
			"streamlit run " + flags + " --server.baseUrlPath dash app.py", "http://127.0.0.1:8601/dash/_stcore/health"},
		{"another app keeps its command", []string{"python3", "-m", "http.server"}, []string{"/a/", "/b/"},
			"python3 -m http.server", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := App{Backend: "dashboard", Argv: tc.argv, Port: 8601, Prefixes: tc.prefixes}.Spec()
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(s.Argv, " "); got != tc.want {
				t.Errorf("argv\n got %s\nwant %s", got, tc.want)
			}
			if s.HealthURL != tc.health || s.Addr != "127.0.0.1:8601" {
				t.Errorf("health %q at %s, want %q at 127.0.0.1:8601", s.HealthURL, s.Addr, tc.health)
			}
			if s.Env[0] != "PORT=8601" {
				t.Errorf("env %v does not start with PORT=8601", s.Env)
			}
		})
	}
}

func TestSpecTellsTheAppHowToVerifyTheAssertion(t *testing.T) {
	s, err := App{Backend: "app", Argv: []string{"./serve"}, Port: 9000, HealthPath: "/ping",
		Issuer: "https://dash.example.com", JWKSURL: "http://127.0.0.1:9090/_moat/jwks.json",
		Audiences: []string{"dash.example.com", "dash.example.com/api/"}}.Spec()
	if err != nil {
		t.Fatal(err)
	}
	want := "PORT=9000 MOAT_ISSUER=https://dash.example.com MOAT_JWKS_URL=http://127.0.0.1:9090/_moat/jwks.json MOAT_AUDIENCE=dash.example.com,dash.example.com/api/"
	if got := strings.Join(s.Env, " "); got != want {
		t.Errorf("env\n got %s\nwant %s", got, want)
	}
	if s.HealthURL != "http://127.0.0.1:9000/ping" {
		t.Errorf("health %q", s.HealthURL)
	}
}

func TestSpecRefusesWhatWouldFightMoat(t *testing.T) {
	for _, tc := range []struct {
		name     string
		argv     []string
		prefixes []string
		want     string
	}{
		{"an empty command", nil, nil, "the command is empty"},
		{"its own port", []string{"streamlit", "run", "app.py", "--server.port=8501"}, nil, "the command sets --server.port, which moat sets itself (it runs Streamlit on 127.0.0.1:8601): remove it"},
		{"its own address", []string{"streamlit", "run", "--server.address", "0.0.0.0", "app.py"}, nil, "sets --server.address"},
		{"two base paths", []string{"streamlit", "run", "app.py"}, []string{"/a/", "/b/"}, `Streamlit serves under one base path, but this backend's routes use the path prefixes "/a/" and "/b/"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := App{Backend: "dash", Argv: tc.argv, Port: 8601, Prefixes: tc.prefixes}.Spec()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

// TestTrustedUserHeadersNameMoatsHeaders keeps the Streamlit setting in
// step with the headers moat sends.
func TestTrustedUserHeadersNameMoatsHeaders(t *testing.T) {
	var m map[string]string
	if err := json.Unmarshal([]byte(TrustedUserHeaders), &m); err != nil {
		t.Fatal(err)
	}
	for header, key := range map[string]string{assertion.HeaderUserEmail: "email", assertion.HeaderUserID: "sub", assertion.HeaderUserGroups: "groups", assertion.HeaderUserName: "name"} {
		if m[header] != key {
			t.Errorf("trustedUserHeaders maps %s to %q, want %q", header, m[header], key)
		}
	}
	if len(m) != 4 {
		t.Errorf("trustedUserHeaders = %v, want exactly moat's four identity headers", m)
	}
}

func TestSpecEqualTellsAChangedCommand(t *testing.T) {
	a := Spec{Name: "app", Argv: []string{"streamlit", "run", "app.py"}, Addr: "127.0.0.1:1"}
	b := a
	b.Argv = []string{"streamlit", "run", "app.py"}
	if !a.Equal(b) {
		t.Error("the same command reads as changed")
	}
	b.Argv = []string{"streamlit", "run", "other.py"}
	if a.Equal(b) {
		t.Error("a changed command reads as the same")
	}
}
