package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"sync"
	"time"
)

const (
	sessionCookie = "outpost_console"
	// loginCookie carries the double-submit token of the sign-in form,
	// which has no session yet to hold one.
	loginCookie = "outpost_console_login"
	cookiePath  = "/ui/"
)

// session is one signed-in browser. The console keeps the user's API
// credentials on the server; the browser holds only the random id.
type session struct {
	id      string
	csrf    string
	created time.Time

	// refreshing is held across a token refresh, so that one request
	// spends the refresh token and the others wait for its result.
	refreshing sync.Mutex

	mu      sync.Mutex // guards the fields below
	seen    time.Time
	user    string
	role    string
	access  string    // bearer token for the API
	refresh string    // empty for a pasted token, which is not refreshed
	expires time.Time // of access; zero when it does not expire
	flash   string    // one message shown on the next page
}

func (s *session) takeFlash() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flash
	s.flash = ""
	return f
}

func (s *session) setFlash(msg string) {
	s.mu.Lock()
	s.flash = msg
	s.mu.Unlock()
}

// sessions is the in-memory session store: sessions are lost when the
// coordinator restarts, and their users sign in again.
type sessions struct {
	idle, max time.Duration
	now       func() time.Time

	mu   sync.Mutex
	byID map[string]*session
}

func randomID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (ss *sessions) create(user, role, access, refresh string, expires time.Time) *session {
	now := ss.now()
	s := &session{id: randomID(), csrf: randomID(), created: now, seen: now,
		user: user, role: role, access: access, refresh: refresh, expires: expires}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for id, o := range ss.byID {
		if ss.expired(o, now) {
			delete(ss.byID, id)
		}
	}
	ss.byID[s.id] = s
	return s
}

func (ss *sessions) expired(s *session, now time.Time) bool {
	s.mu.Lock()
	seen := s.seen
	s.mu.Unlock()
	return now.Sub(seen) > ss.idle || now.Sub(s.created) > ss.max
}

// get returns the live session named by the request's cookie and marks it
// used; nil when there is none or it has expired (and is then dropped).
func (ss *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	ss.mu.Lock()
	s := ss.byID[c.Value]
	ss.mu.Unlock()
	if s == nil {
		return nil
	}
	now := ss.now()
	if ss.expired(s, now) {
		ss.drop(s.id)
		return nil
	}
	s.mu.Lock()
	s.seen = now
	s.mu.Unlock()
	return s
}

func (ss *sessions) drop(id string) {
	ss.mu.Lock()
	delete(ss.byID, id)
	ss.mu.Unlock()
}

func (ss *sessions) setCookie(w http.ResponseWriter, r *http.Request, s *session) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: s.id, Path: cookiePath, MaxAge: int(ss.max.Seconds()),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

func clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: cookiePath, MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// sameOrigin refuses a state-changing request that a browser says comes
// from another site: Sec-Fetch-Site, then Origin, then Referer must name
// this host. A POST with none of them is refused too: every browser the
// console supports sends Origin on a form POST.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		return err == nil && u.Host == r.Host && (u.Scheme == "http" || u.Scheme == "https")
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		return err == nil && u.Host == r.Host
	}
	return false
}

func tokenEqual(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
