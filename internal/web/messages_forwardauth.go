package web

// Messages of forward-auth mode (internal/forwardauth), merged into the
// catalogue at start.
var forwardAuthMessages = map[string]map[string]string{
	"en": {
		"forward_auth.untrusted.title":    "Access denied",
		"forward_auth.untrusted.detail":   "moat was asked about this request by a proxy it does not trust. Tell the site's operators the request ID below: the proxy's address belongs in server.trusted_proxies.",
		"forward_auth.bad_request.title":  "Access denied",
		"forward_auth.bad_request.detail": "The proxy in front of this site did not say which request it asks about. Tell the site's operators the request ID below: the proxy must send X-Forwarded-Method, X-Forwarded-Proto, X-Forwarded-Host and X-Forwarded-Uri, once each.",
	},
	"ja": {
		"forward_auth.untrusted.title":    "アクセスが拒否されました",
		"forward_auth.untrusted.detail":   "信頼されていないプロキシからこのリクエストについて問い合わせがありました。以下のリクエスト ID をサイトの運営者に伝えてください (プロキシのアドレスを server.trusted_proxies に加える必要があります)。",
		"forward_auth.bad_request.title":  "アクセスが拒否されました",
		"forward_auth.bad_request.detail": "このサイトの前段のプロキシが、問い合わせ対象のリクエストを伝えていません。以下のリクエスト ID をサイトの運営者に伝えてください (X-Forwarded-Method、X-Forwarded-Proto、X-Forwarded-Host、X-Forwarded-Uri を各 1 回送る必要があります)。",
	},
}

func init() {
	for lang, msgs := range forwardAuthMessages {
		for k, v := range msgs {
			if _, ok := catalogue[lang][k]; !ok {
				catalogue[lang][k] = v
			}
		}
	}
}
