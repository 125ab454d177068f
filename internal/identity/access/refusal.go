package access

// String names the refusal for logs and traces: pass, sign_in,
// reauthenticate, change_password, not_allowed, second_factor.
func (r Refusal) String() string {
	switch r {
	case Pass:
		return "pass"
	case SignIn:
		return "sign_in"
	case Reauthenticate:
		return "reauthenticate"
	case ChangePassword:
		return "change_password"
	case NotAllowed:
		return "not_allowed"
	case SecondFactor:
		return "second_factor"
	}
	return "unknown"
}
