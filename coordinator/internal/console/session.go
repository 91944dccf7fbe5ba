package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
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
	remote  string // the browser's address when last seen
	user    string
	role    string
	access  string    // bearer token for the API
	refresh string    // empty for a pasted token, which is not refreshed
	expires time.Time // of access; zero when it does not expire
	flash   string    // one message shown on the next page
	// ended: the session is over and its sign-in at the API ended (or
	// being ended); its tokens are not to be used any more.
	ended bool
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
	// ended is told of every session taken out, however it ended (a
	// sign-out, a timeout, credentials refused, the coordinator
	// stopping), outside mu: it ends the session's sign-in at the API.
	ended func(s *session, why string)

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

func (ss *sessions) create(user, role, access, refresh string, expires time.Time, remote string) *session {
	now := ss.now()
	s := &session{id: randomID(), csrf: randomID(), created: now, seen: now, remote: remote,
		user: user, role: role, access: access, refresh: refresh, expires: expires}
	ss.mu.Lock()
	ss.byID[s.id] = s
	ss.mu.Unlock()
	ss.sweep()
	return s
}

// expired says why a session is over by its age; "" while it is not.
func (ss *sessions) expired(s *session, now time.Time) string {
	s.mu.Lock()
	seen := s.seen
	s.mu.Unlock()
	switch {
	case now.Sub(s.created) > ss.max:
		return fmt.Sprintf("%v after sign-in", ss.max)
	case now.Sub(seen) > ss.idle:
		return fmt.Sprintf("idle for %v", ss.idle)
	}
	return ""
}

// sweep ends the sessions that expired.
func (ss *sessions) sweep() {
	now := ss.now()
	type gone struct {
		s   *session
		why string
	}
	var out []gone
	ss.mu.Lock()
	for id, s := range ss.byID {
		if why := ss.expired(s, now); why != "" {
			delete(ss.byID, id)
			out = append(out, gone{s, why})
		}
	}
	ss.mu.Unlock()
	for _, g := range out {
		ss.ended(g.s, g.why)
	}
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
	if why := ss.expired(s, now); why != "" {
		ss.end(s, why)
		return nil
	}
	s.mu.Lock()
	s.seen, s.remote = now, r.RemoteAddr
	s.mu.Unlock()
	return s
}

// end takes a session out and ends it.
func (ss *sessions) end(s *session, why string) {
	ss.mu.Lock()
	delete(ss.byID, s.id)
	ss.mu.Unlock()
	ss.ended(s, why)
}

// endAll ends every session.
func (ss *sessions) endAll(why string) {
	ss.mu.Lock()
	all := slices.Collect(maps.Values(ss.byID))
	clear(ss.byID)
	ss.mu.Unlock()
	for _, s := range all {
		ss.ended(s, why)
	}
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
