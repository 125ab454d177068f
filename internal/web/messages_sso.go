package web

// Messages of single sign-on and bearer tokens (internal/auth sso.go and
// bearer.go), merged into the catalogue at start.
var ssoMessages = map[string]map[string]string{
	"en": {
		"auth.sso.down.title":        "The sign-in service is unavailable",
		"auth.sso.down.detail":       "Your organisation's sign-in service could not be reached. Wait a minute and try again.",
		"auth.sso.bad_state.title":   "This sign-in has expired",
		"auth.sso.bad_state.detail":  "The sign-in link was already used, is older than 10 minutes, or was started in another browser. Go back to the site and sign in again.",
		"auth.sso.unverified.title":  "Email address not verified",
		"auth.sso.unverified.detail": "Your sign-in service has not verified your email address. Verify it there, then sign in again.",
		"auth.sso.domain.title":      "Use your organisation's account",
		"auth.sso.domain.detail":     "This site accepts only accounts of %s. Sign in with that account.",
		"auth.sso.failed.title":      "Sign-in failed",
		"auth.sso.failed.detail":     "The sign-in service's answer could not be verified. Try again; if it keeps happening, tell the site's operators.",
		"auth.sso.refused.title":     "Sign-in was cancelled",
		"auth.sso.refused.detail":    "The sign-in service did not sign you in. Go back to the site to try again.",
		"auth.bearer.invalid.title":  "Invalid token",
		"auth.bearer.invalid.detail": "The bearer token is not valid here: it is malformed, expired, revoked, or for another audience.",
	},
	"ja": {
		"auth.sso.down.title":        "サインインサービスを利用できません",
		"auth.sso.down.detail":       "組織のサインインサービスに接続できませんでした。しばらく待ってから再度お試しください。",
		"auth.sso.bad_state.title":   "このサインインは期限切れです",
		"auth.sso.bad_state.detail":  "サインインのリンクは使用済みか、10 分以上前のものか、別のブラウザで開始されたものです。サイトに戻って再度サインインしてください。",
		"auth.sso.unverified.title":  "メールアドレスが確認されていません",
		"auth.sso.unverified.detail": "サインインサービスでメールアドレスが確認されていません。確認してから再度サインインしてください。",
		"auth.sso.domain.title":      "組織のアカウントを使ってください",
		"auth.sso.domain.detail":     "このサイトは %s のアカウントのみ受け付けます。そのアカウントでサインインしてください。",
		"auth.sso.failed.title":      "サインインに失敗しました",
		"auth.sso.failed.detail":     "サインインサービスの応答を検証できませんでした。再度お試しください。続く場合はサイト管理者にお知らせください。",
		"auth.sso.refused.title":     "サインインは取り消されました",
		"auth.sso.refused.detail":    "サインインサービスでサインインが完了しませんでした。サイトに戻って再度お試しください。",
		"auth.bearer.invalid.title":  "トークンが無効です",
		"auth.bearer.invalid.detail": "このベアラートークンは無効です (形式不正、期限切れ、失効済み、または別の対象者向け)。",
	},
}

func init() { addMessages(ssoMessages) }

// addMessages merges a part's messages into the catalogue; a key the
// catalogue already has keeps its text.
func addMessages(part map[string]map[string]string) {
	for lang, msgs := range part {
		for k, v := range msgs {
			if _, ok := catalogue[lang][k]; !ok {
				catalogue[lang][k] = v
			}
		}
	}
}
