package web

import "fmt"

// catalogue holds every string moat shows a person, by key, in each
// language. A key missing in Japanese falls back to English; a key missing
// in both shows the key itself, so a gap is visible rather than blank.
var catalogue = map[string]map[string]string{
	"en": {
		"brand":                    "moat",
		"request_id":               "Request ID",
		"not_found.title":          "Not found",
		"not_found.detail":         "There is nothing at this address. Check the link, or ask whoever sent it.",
		"bad_gateway.title":        "The application is not answering",
		"bad_gateway.detail":       "moat could not reach the application behind this address. Try again in a minute; if it persists, tell the site's operators the request ID below.",
		"gateway_timeout.title":    "The application took too long",
		"gateway_timeout.detail":   "The application behind this address did not answer in time. Try again; if it persists, tell the site's operators the request ID below.",
		"forbidden.title":          "Access denied",
		"forbidden.detail":         "Your request was refused by this site's security policy. If you think this is wrong, tell the site's operators the request ID below.",
		"too_many_requests.title":  "Too many requests",
		"too_many_requests.detail": "You have sent too many requests. Wait a little and try again.",
		"body_too_large.title":     "Request too large",
		"body_too_large.detail":    "The request body is larger than this site accepts.",
		"unavailable.title":        "Service unavailable",
		"unavailable.detail":       "This site cannot serve the request right now. Try again in a minute.",
		"bad_request.title":        "Bad request",
		"bad_request.detail":       "moat could not understand the request.",
	},
	"ja": {
		"request_id":               "リクエスト ID",
		"not_found.title":          "ページが見つかりません",
		"not_found.detail":         "このアドレスには何もありません。リンクを確認するか、送信者にお問い合わせください。",
		"bad_gateway.title":        "アプリケーションが応答していません",
		"bad_gateway.detail":       "このアドレスのアプリケーションに接続できませんでした。しばらくしてから再度お試しください。解決しない場合は、下のリクエスト ID をサイト管理者にお伝えください。",
		"gateway_timeout.title":    "アプリケーションの応答が遅すぎます",
		"gateway_timeout.detail":   "アプリケーションが時間内に応答しませんでした。再度お試しください。解決しない場合は、下のリクエスト ID をサイト管理者にお伝えください。",
		"forbidden.title":          "アクセスが拒否されました",
		"forbidden.detail":         "このサイトのセキュリティポリシーによりリクエストが拒否されました。誤りと思われる場合は、下のリクエスト ID をサイト管理者にお伝えください。",
		"too_many_requests.title":  "リクエストが多すぎます",
		"too_many_requests.detail": "短時間に多くのリクエストが送信されました。しばらく待ってから再度お試しください。",
		"body_too_large.title":     "リクエストが大きすぎます",
		"body_too_large.detail":    "リクエストの本文がこのサイトの上限を超えています。",
		"unavailable.title":        "サービスを利用できません",
		"unavailable.detail":       "現在このリクエストを処理できません。しばらくしてから再度お試しください。",
		"bad_request.title":        "不正なリクエスト",
		"bad_request.detail":       "リクエストを解釈できませんでした。",
	},
}

// T returns the message key in lang, formatted with args.
func T(lang, key string, args ...any) string {
	s, ok := catalogue[lang][key]
	if !ok {
		s, ok = catalogue["en"][key]
	}
	if !ok {
		return key
	}
	if len(args) > 0 {
		return fmt.Sprintf(s, args...)
	}
	return s
}
