package login_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/authtest"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/store"
)

// Issue 12 #2: ten wrong passwords from anywhere locked an account for
// everyone for 15 minutes, its owner included: a DoS anyone could run. An
// attacker from other addresses now hammers the account; the owner's
// browser, which signed in before, signs in at once, even while the
// attack goes on; and the owner on a new device signs in once the
// slow-down's turn comes.
func TestAnyoneCannotLockAnotherPersonsAccount(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	h.Throttled(authtest.QuickLimits())

	laptop := authtest.FromAddress(h.Browser(), "192.0.2.10")
	authtest.WantRedirect(t, h.Login(laptop, "alice@example.com", authtest.AlicePassword, "/app/"), "/app/")
	if !h.HasDeviceCookie(laptop) {
		t.Fatal("the sign-in gave the browser no device cookie")
	}
	h.ForgetSession(laptop)

	// The attack: five addresses, each well past its budget.
	var refused, tried int
	for a := range 5 {
		c := authtest.FromAddress(h.Browser(), fmt.Sprintf("198.51.100.%d", a+1))
		for i := range 8 {
			switch resp := h.Login(c, "alice@example.com", fmt.Sprintf("guess %d-%d", a, i), "/app/"); resp.StatusCode {
			case http.StatusUnauthorized:
				tried++
			case http.StatusTooManyRequests:
				refused++
			default:
				t.Fatalf("a guess got %d", resp.StatusCode)
			}
		}
	}
	t.Logf("of 40 guesses from 5 addresses, %d were checked and %d refused", tried, refused)
	if tried > 5*3 {
		t.Errorf("%d guesses were checked, more than 3 per address", tried)
	}

	// While the attack goes on from fresh addresses, the owner's browser
	// signs in at once.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for a := 0; ; a++ {
			select {
			case <-stop:
				return
			default:
			}
			c := authtest.FromAddress(h.Browser(), fmt.Sprintf("203.0.113.%d", 100+a%100))
			h.Login(c, "alice@example.com", "another guess!!", "/app/")
		}
	})
	authtest.WantRedirect(t, h.Login(laptop, "alice@example.com", authtest.AlicePassword, "/app/"), "/app/")
	close(stop)
	wg.Wait()

	// The owner on a new device waits for the slow-down, never for a lock.
	phone := authtest.FromAddress(h.Browser(), "192.0.2.77")
	deadline := time.Now().Add(10 * time.Second)
	waits := 0
	for {
		resp := h.Login(phone, "alice@example.com", authtest.AlicePassword, "/app/")
		if resp.StatusCode == http.StatusSeeOther {
			break
		}
		authtest.WantStatus(t, resp, http.StatusTooManyRequests)
		if body := authtest.ReadBody(t, resp); strings.Contains(body, "paused") {
			t.Fatalf("the owner's new device is locked out:\n%s", body)
		}
		if wait := authtest.RetryAfter(t, resp); wait > 2*time.Second {
			t.Fatalf("the new device must wait %v, longer than the slow-down's 0.4 s", wait)
		}
		if waits++; time.Now().After(deadline) {
			t.Fatalf("the owner's new device did not get in within 10 s (%d refusals)", waits)
		}
	}
	t.Logf("the owner's new device got in after %d refusals", waits)
	if events, _ := h.Store.ListAudit(context.Background(), store.AuditFilter{Action: "login.locked"}); len(events) != 0 {
		t.Errorf("the attack from %d addresses locked the account: %+v", 5, events)
	}
}

// The budget is per (account, client): a client past its tries at one
// account is refused there, even with the right password, but may still
// try another account, and another client may still sign in to the first.
func TestTheSignInBudgetIsPerAccountAndClient(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	h.AddUser("bob@other.org", authtest.BobPassword, nil, false)
	l := authtest.QuickLimits()
	l.Account.Free = 100 // no slow-down: the pair's budget alone
	h.Throttled(l)
	shared := authtest.FromAddress(h.Browser(), "198.51.100.7")
	for range l.Pair.N {
		authtest.WantStatus(t, h.Login(shared, "alice@example.com", "wrong password!!", "/"), http.StatusUnauthorized)
	}
	resp := h.Login(shared, "alice@example.com", authtest.AlicePassword, "/")
	authtest.WantStatus(t, resp, http.StatusTooManyRequests)
	if authtest.RetryAfter(t, resp) <= 0 || !strings.Contains(authtest.ReadBody(t, resp), "Wait") {
		t.Error("the 429 page does not say how long to wait")
	}
	authtest.WantRedirect(t, h.Login(shared, "bob@other.org", authtest.BobPassword, "/"), "/")
	authtest.WantRedirect(t, h.Login(authtest.FromAddress(h.Browser(), "198.51.100.8"), "alice@example.com", authtest.AlicePassword, "/"), "/")
}

// One address trying many accounts runs out of its own budget.
func TestManyFailuresFromOneAddressAreThrottled(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	l := authtest.QuickLimits()
	l.Client.N = 3
	h.Throttled(l)
	c := authtest.FromAddress(h.Browser(), "198.51.100.7")
	for i := range 3 {
		authtest.WantStatus(t, h.Login(c, fmt.Sprintf("user%d@example.com", i), "wrong password!!", "/"), http.StatusUnauthorized)
	}
	authtest.WantStatus(t, h.Login(c, "other@example.com", "wrong password!!", "/"), http.StatusTooManyRequests)
	authtest.WantStatus(t, h.Login(authtest.FromAddress(h.Browser(), "198.51.100.8"), "other@example.com", "wrong password!!", "/"), http.StatusUnauthorized)
}

// A distributed attack (failures from many clients) locks sign-in from
// unknown devices, with an audit event; the owner's browser still signs
// in; the lock's page says what to do; an unlock lifts it.
func TestADistributedAttackLocksNewDevicesOnly(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	l := authtest.QuickLimits()
	l.Account.Free = 100
	l.Lock = throttle.Lock{Failures: 8, Clients: 4, For: time.Hour}
	h.Throttled(l)
	laptop := authtest.FromAddress(h.Browser(), "192.0.2.10")
	authtest.WantRedirect(t, h.Login(laptop, "alice@example.com", authtest.AlicePassword, "/"), "/")
	h.ForgetSession(laptop)
	for a := range 4 {
		c := authtest.FromAddress(h.Browser(), fmt.Sprintf("198.51.100.%d", a+1))
		for range 2 {
			authtest.WantStatus(t, h.Login(c, "alice@example.com", "wrong password!!", "/"), http.StatusUnauthorized)
		}
	}
	events, _ := h.Store.ListAudit(context.Background(), store.AuditFilter{Action: "login.locked"})
	if len(events) != 1 || events[0].Subject != "alice@example.com" || !strings.Contains(events[0].Detail, "unknown devices") {
		t.Fatalf("login.locked events: %+v", events)
	}
	phone := authtest.FromAddress(h.Browser(), "192.0.2.77")
	resp := h.Login(phone, "alice@example.com", authtest.AlicePassword, "/")
	authtest.WantStatus(t, resp, http.StatusTooManyRequests)
	if wait := authtest.RetryAfter(t, resp); wait < 59*time.Minute {
		t.Errorf("Retry-After %v during an hour's lock", wait)
	}
	if body := authtest.ReadBody(t, resp); !strings.Contains(body, "paused") || !strings.Contains(body, "administrator") {
		t.Errorf("the lock's page does not say what to do:\n%s", body)
	}
	authtest.WantRedirect(t, h.Login(laptop, "alice@example.com", authtest.AlicePassword, "/"), "/")
	if err := h.Proc.Throttle.Unlock(context.Background(), "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	authtest.WantRedirect(t, h.Login(phone, "alice@example.com", authtest.AlicePassword, "/"), "/")
}

// A throttled script gets the short answer, and only after a hold: a login
// flood from one address then gets a few answers a second per connection
// rather than thousands, and no rendered page (issue 13: rendering the
// login page was most of a flood's cost). A person's page navigation gets
// the login page, saying how long to wait.
func TestAThrottledScriptGetsTheShortAnswerAfterAHold(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	l := authtest.QuickLimits()
	l.Client.N = 1
	h.Proc.Throttle.Limits[throttle.Password] = l
	c := authtest.FromAddress(h.Browser(), "198.51.100.7")
	authtest.WantStatus(t, h.Login(c, "a@example.com", "wrong password!!", "/"), http.StatusUnauthorized)
	tok := h.CSRF(c, "/_moat/login?return_to=/")
	form := url.Values{"csrf": {tok}, "email": {"b@example.com"}, "password": {"wrong password!!"}, "return_to": {"/"}}
	req, _ := http.NewRequest("POST", h.Srv.URL+"/_moat/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	defer resp.Body.Close()
	authtest.WantStatus(t, resp, http.StatusTooManyRequests)
	body := authtest.ReadBody(t, resp)
	if authtest.RetryAfter(t, resp) <= 0 || resp.Header.Get("Content-Type") != "application/json" ||
		!strings.Contains(body, `"error":"too_many_requests"`) || strings.Contains(body, "<form") {
		t.Errorf("a throttled script got %s:\n%s", resp.Header.Get("Content-Type"), body)
	}
	if took < throttle.MaxHold {
		t.Errorf("the refusal came after %v, before the %v hold", took, throttle.MaxHold)
	}
	resp = h.Login(c, "b@example.com", "wrong password!!", "/")
	authtest.WantStatus(t, resp, http.StatusTooManyRequests)
	if body := authtest.ReadBody(t, resp); !strings.Contains(body, "<form") || !strings.Contains(body, "Wait") {
		t.Errorf("a person's navigation did not get the login page saying how long to wait:\n%s", body)
	}
}

// Wrong current passwords on the password page spend the session's own
// budget.
func TestWrongCurrentPasswordsAreThrottled(t *testing.T) {
	t.Parallel()
	h := authtest.New(t, nil)
	h.AddUser("alice@example.com", authtest.AlicePassword, []string{"staff"}, false)
	h.Throttled(authtest.QuickLimits())
	c := h.Browser()
	authtest.WantRedirect(t, h.Login(c, "alice@example.com", authtest.AlicePassword, "/"), "/")
	change := func(current string) *http.Response {
		tok := h.CSRF(c, "/_moat/password")
		return h.Nav(c, "POST", "/_moat/password", url.Values{"csrf": {tok}, "current": {current}, "new": {"a brand new passphrase"}, "confirm": {"a brand new passphrase"}})
	}
	for range authtest.QuickLimits().Device.N {
		authtest.WantStatus(t, change("not my password"), http.StatusBadRequest)
	}
	authtest.WantStatus(t, change(authtest.AlicePassword), http.StatusTooManyRequests)
}
