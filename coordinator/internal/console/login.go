package console

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// loginPage shows the sign-in form. Its CSRF token is a double-submit
// pair: a fresh random value in a cookie and in the form, which another
// site can neither read nor set.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if s := c.sessions.get(r); s != nil {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	f := newForm(nil)
	f.Values.Set("next", r.URL.Query().Get("next"))
	if r.URL.Query().Get("ended") != "" {
		f.Top = "Your session has ended: sign in again."
	}
	c.showLogin(w, r, http.StatusOK, f)
}

func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, f *form) {
	tok := randomID()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: tok, Path: cookiePath, MaxAge: 3600,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	f.Values.Set("password", "")
	f.Values.Set("token", "")
	if err := c.render(w, r, nil, status, "login", "", "Sign in", f, map[string]string{"LoginCSRF": tok}); err != nil {
		c.log.Error("render sign-in page", "err", err)
	}
}

// login signs in with a user name and password (POST /v1/login, with the
// API's rate limits and lockout) or with a pasted token — the bootstrap
// admin token, or an access token — checked with GET /v1/me.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		if timedOut(err) {
			c.formTooSlow(w)
			return
		}
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	f := newForm(r.PostForm)
	ck, err := r.Cookie(loginCookie)
	if !sameOrigin(r) || err != nil || !tokenEqual(ck.Value, r.PostFormValue("csrf")) {
		http.Error(w, "refused: the sign-in form's security token is missing or stale; reload the page and try again", http.StatusForbidden)
		return
	}
	name, password := strings.TrimSpace(f.Get("user")), f.Get("password")
	token := strings.TrimSpace(f.Get("token"))
	var t tokens
	switch {
	case token != "":
		if !c.tokenTries.allow(remoteHost(r), c.now()) {
			f.Top = "Too many failed sign-ins from this address: wait a minute and try again."
			c.showLogin(w, r, http.StatusTooManyRequests, f)
			return
		}
		var me struct {
			User string `json:"user"`
			Role string `json:"role"`
		}
		if err := c.call(r.Context(), r.RemoteAddr, token, "GET", "/v1/me", nil, &me); err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				c.log.Error("sign in with a token", "err", err)
			}
			c.tokenTries.fail(remoteHost(r), c.now())
			f.Errors["token"] = "This token is not valid: paste the contents of admin.token from the coordinator's data directory."
			c.showLogin(w, r, http.StatusUnauthorized, f)
			return
		}
		t = tokens{AccessToken: token, User: me.User, Role: me.Role}
	case name == "" && password == "":
		f.Top = "Give a user name and password, or paste a token."
		c.showLogin(w, r, http.StatusBadRequest, f)
		return
	default:
		err := c.call(r.Context(), r.RemoteAddr, "", "POST", "/v1/login", map[string]string{"user": name, "password": password}, &t)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				c.log.Error("sign in", "err", err)
				f.Top = "Sign-in failed on the coordinator; see its log."
				c.showLogin(w, r, http.StatusInternalServerError, f)
				return
			}
			switch {
			case strings.Contains(ae.Msg, "user and password"):
				if name == "" {
					f.Errors["user"] = ae.Msg
				} else {
					f.Errors["password"] = ae.Msg
				}
			case ae.Status == http.StatusUnauthorized:
				f.Errors["password"] = ae.Msg
			default:
				f.Top = ae.Msg
			}
			c.showLogin(w, r, ae.Status, f)
			return
		}
	}
	if t.Role == "" {
		// The API signed the technician in: end that, as nothing uses it.
		c.endAPISignIn(r.RemoteAddr, t.User, t.RefreshToken)
		f.Top = "User " + t.User + " is a technician: the console is for admins, operators and read-only users."
		c.showLogin(w, r, http.StatusForbidden, f)
		return
	}
	var expires time.Time
	if t.RefreshToken != "" {
		expires = t.Expires
	}
	// A session the browser still holds (a sign-in form left open in
	// another tab) ends with its sign-in at the API: its cookie is
	// replaced now, and its id and refresh token would stay good until
	// it expired.
	if old := c.sessions.get(r); old != nil {
		c.sessions.end(old, "signed in again in its browser")
	}
	s := c.sessions.create(t.User, t.Role, t.AccessToken, t.RefreshToken, expires, r.RemoteAddr)
	c.sessions.setCookie(w, r, s)
	clearCookie(w, r, loginCookie)
	c.log.Info("console sign-in", "user", t.User, "role", t.Role, "remote", r.RemoteAddr)
	http.Redirect(w, r, consoleNext(f.Get("next")), http.StatusSeeOther)
}

// consoleNext is where to go after sign-in: next when it is a page of the
// console, else the dashboard. A browser resolves dot segments, %2e%2e
// too, and drops tabs and newlines before it follows a URL (net/http
// leaves a URL with them in Location as it is), so none of them may lead
// out of /ui/.
func consoleNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" ||
		!strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\t\r\n") {
		return "/ui/"
	}
	for _, seg := range strings.Split(u.EscapedPath(), "/") {
		if seg = strings.ReplaceAll(strings.ToLower(seg), "%2e", "."); seg == "." || seg == ".." {
			return "/ui/"
		}
	}
	return next
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) error {
	c.sessions.end(s, "signed out")
	clearCookie(w, r, sessionCookie)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
	return nil
}

// endSignIn ends a session's sign-in at the API, whatever ended the
// session (sessions.ended): a session that times out, or whose browser
// never comes back, leaves no refresh token behind that would still buy
// access tokens for hours. The lock waits for a refresh under way, whose
// new token is the one to end; none starts after (token refuses an ended
// session).
func (c *Console) endSignIn(s *session, why string) {
	s.refreshing.Lock()
	s.mu.Lock()
	refresh, user, remote, already := s.refresh, s.user, s.remote, s.ended
	s.refresh, s.ended = "", true
	s.mu.Unlock()
	s.refreshing.Unlock()
	if already {
		return
	}
	c.log.Info("console session ended", "user", user, "why", why)
	c.endAPISignIn(remote, user, refresh)
}

// endAPISignIn ends the sign-in a refresh token belongs to, as outpost
// logout does: its refresh tokens are void and the audit log has the
// sign-out. A pasted token has no refresh token, and nothing to end.
func (c *Console) endAPISignIn(remote, user, refresh string) {
	if refresh == "" {
		return
	}
	// In-process and quick; not cut short by the request that ends it.
	if err := c.call(context.Background(), remote, "", "POST", "/v1/logout", map[string]string{"refresh_token": refresh}, nil); err != nil {
		c.log.Info("end the API sign-in of a console session", "user", user, "err", err)
	}
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// failures limits sign-ins with a pasted token, which the API checks as a
// bearer token and so does not count as a failed sign-in: as the API does
// for passwords per address, at most perMinute failures a minute.
type failures struct {
	perMinute int

	mu sync.Mutex
	by map[string][]time.Time
}

func (f *failures) recent(host string, now time.Time) []time.Time {
	var keep []time.Time
	for _, t := range f.by[host] {
		if now.Sub(t) < time.Minute {
			keep = append(keep, t)
		}
	}
	if keep == nil {
		delete(f.by, host)
	} else {
		f.by[host] = keep
	}
	return keep
}

func (f *failures) allow(host string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.recent(host, now)) < f.perMinute
}

func (f *failures) fail(host string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.by) > 10000 { // forget the oldest news rather than grow without bound
		for h := range f.by {
			f.recent(h, now)
		}
	}
	f.by[host] = append(f.recent(host, now), now)
}
