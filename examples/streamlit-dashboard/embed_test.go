package dashboard

import (
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/supervise"
)

// TestStreamlitSettingMatchesWhatMoatRunSets keeps .streamlit/config.toml's
// trustedUserHeaders the same as the flag `moat run` gives Streamlit.
func TestStreamlitSettingMatchesWhatMoatRunSets(t *testing.T) {
	b, err := Files.ReadFile(".streamlit/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := "trustedUserHeaders = '" + supervise.TrustedUserHeaders + "'"
	if !strings.Contains(string(b), want+"\n") {
		t.Errorf(".streamlit/config.toml lacks the line\n%s", want)
	}
}
