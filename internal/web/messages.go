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
		// Sign-in (internal/auth).
		"auth.login.title":               "Sign in",
		"auth.login.signin_to":           "Sign in to",
		"auth.login.email":               "Email address",
		"auth.login.password":            "Password",
		"auth.login.submit":              "Sign in",
		"auth.login.with":                "Sign in with %s",
		"auth.login.no_methods":          "No sign-in method is set up for this site. Ask the site's operators.",
		"auth.login.failed":              "The email address or password is not correct, or the account cannot sign in.",
		"auth.login.wait":                "Too many failed attempts. Wait %d seconds and try again.",
		"auth.login.locked":              "Too many failed attempts. Sign-in is locked for about %d minutes.",
		"auth.signed_in_as":              "You are signed in as %s.",
		"auth.logout.title":              "Sign out",
		"auth.logout.submit":             "Sign out",
		"auth.logout.link":               "Sign out",
		"auth.password.title":            "Change password",
		"auth.password.forced":           "You must choose a new password before you continue.",
		"auth.password.current":          "Current password",
		"auth.password.new":              "New password",
		"auth.password.confirm":          "New password again",
		"auth.password.hint":             "At least %d characters; avoid common passwords.",
		"auth.password.submit":           "Change password",
		"auth.password.wrong_current":    "The current password is not correct.",
		"auth.password.mismatch":         "The two new passwords differ.",
		"auth.password.same":             "Choose a password different from the current one.",
		"auth.password.weak":             "This password cannot be used: %s.",
		"auth.password.not_local.title":  "No password to change",
		"auth.password.not_local.detail": "You signed in with single sign-on; change your password with your provider.",
		"auth.unauthorized.title":        "Sign-in required",
		"auth.unauthorized.detail":       "This address needs a signed-in session. Sign in and try again.",
		"auth.not_allowed.title":         "You do not have access",
		"auth.not_allowed.detail":        "You are signed in as %s, which may not use this site.",
		"auth.not_allowed.page":          "This account may not use this site. Sign out and sign in with another account, or ask the site's operators for access.",
		"auth.change_required.title":     "Password change required",
		"auth.change_required.detail":    "Open the site in a browser and choose a new password first.",
		"auth.csrf.title":                "The form has expired",
		"auth.csrf.detail":               "The form was sent from another page or has expired. Go back, reload the page and try again.",
		"auth.no_password_login.title":   "Password sign-in is off",
		"auth.no_password_login.detail":  "This site does not accept password sign-in.",
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
		// サインイン (internal/auth)
		"auth.login.title":               "サインイン",
		"auth.login.signin_to":           "サインイン先",
		"auth.login.email":               "メールアドレス",
		"auth.login.password":            "パスワード",
		"auth.login.submit":              "サインイン",
		"auth.login.with":                "%s でサインイン",
		"auth.login.no_methods":          "このサイトにはサインイン方法が設定されていません。サイト管理者にお問い合わせください。",
		"auth.login.failed":              "メールアドレスまたはパスワードが正しくないか、このアカウントではサインインできません。",
		"auth.login.wait":                "失敗が多すぎます。%d 秒待ってから再度お試しください。",
		"auth.login.locked":              "失敗が多すぎるため、サインインは約 %d 分間ロックされています。",
		"auth.signed_in_as":              "%s としてサインインしています。",
		"auth.logout.title":              "サインアウト",
		"auth.logout.submit":             "サインアウト",
		"auth.logout.link":               "サインアウト",
		"auth.password.title":            "パスワードの変更",
		"auth.password.forced":           "続行する前に新しいパスワードを設定してください。",
		"auth.password.current":          "現在のパスワード",
		"auth.password.new":              "新しいパスワード",
		"auth.password.confirm":          "新しいパスワード (確認)",
		"auth.password.hint":             "%d 文字以上。よく使われるパスワードは避けてください。",
		"auth.password.submit":           "パスワードを変更",
		"auth.password.wrong_current":    "現在のパスワードが正しくありません。",
		"auth.password.mismatch":         "2 つの新しいパスワードが一致しません。",
		"auth.password.same":             "現在とは異なるパスワードを選んでください。",
		"auth.password.weak":             "このパスワードは使用できません: %s。",
		"auth.password.not_local.title":  "変更できるパスワードがありません",
		"auth.password.not_local.detail": "シングルサインオンでサインインしています。パスワードはプロバイダ側で変更してください。",
		"auth.unauthorized.title":        "サインインが必要です",
		"auth.unauthorized.detail":       "このアドレスにはサインインが必要です。サインインしてから再度お試しください。",
		"auth.not_allowed.title":         "アクセス権がありません",
		"auth.not_allowed.detail":        "%s としてサインインしていますが、このアカウントはこのサイトを利用できません。",
		"auth.not_allowed.page":          "このアカウントではこのサイトを利用できません。サインアウトして別のアカウントでサインインするか、サイト管理者にアクセス権を依頼してください。",
		"auth.change_required.title":     "パスワードの変更が必要です",
		"auth.change_required.detail":    "ブラウザでサイトを開き、先に新しいパスワードを設定してください。",
		"auth.csrf.title":                "フォームの有効期限が切れました",
		"auth.csrf.detail":               "フォームが別のページから送信されたか、有効期限が切れています。戻ってページを再読み込みし、再度お試しください。",
		"auth.no_password_login.title":   "パスワードでのサインインは無効です",
		"auth.no_password_login.detail":  "このサイトはパスワードでのサインインを受け付けていません。",
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
