package web

// Messages of the answers given while moat's database cannot be reached
// (the session check, sign-in, sign-out, changes in the console and the
// account page), merged into the catalogue at start. Each says what could
// not be done, that nothing else changed, and to try again.
var outageMessages = map[string]map[string]string{
	"en": {
		"session_unavailable.title":      "Your sign-in cannot be checked right now",
		"session_unavailable.detail":     "moat cannot reach its database to check your sign-in. You have not been signed out: try again in a minute.",
		"store_unavailable.title":        "Service unavailable",
		"store_unavailable.detail":       "moat cannot reach its database right now, so it could not do this and nothing was changed. Try again in a minute.",
		"auth.signin_unavailable.title":  "We cannot sign you in right now",
		"auth.signin_unavailable.detail": "moat cannot check sign-ins at the moment (its database or counters are unreachable). Nothing was changed: try again in a minute.",
		"auth.logout_unavailable.title":  "You are still signed in",
		"auth.logout_unavailable.detail": "moat could not reach its database to end your session, so it is still active. Try signing out again in a minute.",
	},
	"ja": {
		"session_unavailable.title":      "現在サインイン状態を確認できません",
		"session_unavailable.detail":     "データベースに接続できないため、サインイン状態を確認できません。サインアウトはされていません。しばらくしてから再度お試しください。",
		"store_unavailable.title":        "サービスを利用できません",
		"store_unavailable.detail":       "現在データベースに接続できないため、何も変更されていません。しばらくしてから再度お試しください。",
		"auth.signin_unavailable.title":  "現在サインインできません",
		"auth.signin_unavailable.detail": "データベースまたはカウンターに接続できないため、現在サインインを確認できません。何も変更されていません。しばらくしてから再度お試しください。",
		"auth.logout_unavailable.title":  "まだサインインしたままです",
		"auth.logout_unavailable.detail": "データベースに接続できないため、セッションを終了できませんでした。セッションはまだ有効です。しばらくしてからもう一度サインアウトしてください。",
	},
}

func init() { addMessages(outageMessages) }
