// Package deps pins the modules moat's packages use while they are written
// in parallel; it is removed once every module has a real importer.
package deps

import (
	_ "github.com/chromedp/chromedp"
	_ "github.com/coder/websocket"
	_ "github.com/coreos/go-oidc/v3/oidc"
	_ "github.com/corazawaf/coraza-coreruleset/v4"
	_ "github.com/corazawaf/coraza/v3"
	_ "github.com/go-jose/go-jose/v4"
	_ "github.com/google/cel-go/cel"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/pquerna/otp/totp"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/redis/go-redis/v9"
	_ "github.com/spf13/cobra"
	_ "github.com/zitadel/oidc/v3/pkg/op"
	_ "golang.org/x/crypto/acme/autocert"
	_ "golang.org/x/crypto/argon2"
	_ "golang.org/x/net/http2"
	_ "golang.org/x/oauth2"
	_ "gopkg.in/yaml.v3"
	_ "modernc.org/sqlite"
)
