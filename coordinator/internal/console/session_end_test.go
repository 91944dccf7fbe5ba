package console

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/api"
	"github.com/outposthq/outpost/pkg/testutil"
)

// refreshOf is the API refresh token a browser's console session holds.
func refreshOf(t *testing.T, b *browser) string {
	t.Helper()
	s := b.e.c.sessions.get(sessionRequest(b))
	if s == nil {
		t.Fatal("no live session")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refresh == "" {
		t.Fatal("a password sign-in has no refresh token")
	}
	return s.refresh
}

// refreshes says whether the API still takes a refresh token. Only for a
// token that should be void: one it takes is spent.
func (e *env) refreshes(refresh string) bool {
	e.t.Helper()
	return e.apiDo("POST", "/v1/login/refresh", map[string]string{"refresh_token": refresh}, nil) == http.StatusOK
}

// A console session that times out — idle for 30 minutes, or 12 hours
// after sign-in however busy — ends its sign-in at the API as a sign-out
// does: the refresh token it held buys no access token afterwards (it
// did for up to 12 hours more, from the time of its last refresh).
func TestASessionThatTimesOutEndsItsAPISignIn(t *testing.T) {
	e := newEnv(t)
	e.addUser("olga", "correct horse", "operator")

	b := e.signIn("olga", "correct horse")
	refresh := refreshOf(t, b)
	e.clock.add(31 * time.Minute)
	if res, _ := b.get("/ui/"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("after 31 idle minutes: %d", res.StatusCode)
	}
	if e.refreshes(refresh) {
		t.Error("the refresh token of a console session that went idle still works")
	}

	b = e.signIn("olga", "correct horse")
	for range 11*4 + 3 { // 11h45m, a request every 15 minutes
		e.clock.add(15 * time.Minute)
		if res, body := b.get("/ui/"); res.StatusCode != 200 {
			t.Fatalf("at %v: %d\n%s", e.clock.now(), res.StatusCode, body)
		}
	}
	refresh = refreshOf(t, b)
	e.clock.add(16 * time.Minute)
	if res, _ := b.get("/ui/"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("after 12h: %d", res.StatusCode)
	}
	if e.refreshes(refresh) {
		t.Error("the refresh token of a console session at its 12 hours still works")
	}
}

// A session whose browser never comes back ends its API sign-in when it
// is found expired by someone else's sign-in.
func TestASessionLeftAloneEndsItsAPISignIn(t *testing.T) {
	e := newEnv(t)
	e.addUser("olga", "correct horse", "operator")
	refresh := refreshOf(t, e.signIn("olga", "correct horse"))
	e.clock.add(31 * time.Minute)
	e.signIn("", adminToken)
	if e.refreshes(refresh) {
		t.Error("the refresh token of an expired console session still works")
	}
}

// loginCapture passes requests to the API and keeps the refresh tokens
// its sign-ins give out.
type loginCapture struct {
	api http.Handler

	mu      sync.Mutex
	refresh []string
}

func (l *loginCapture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/login" {
		l.api.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	l.api.ServeHTTP(rec, r)
	var t tokens
	if json.Unmarshal(rec.Body.Bytes(), &t) == nil && t.RefreshToken != "" {
		l.mu.Lock()
		l.refresh = append(l.refresh, t.RefreshToken)
		l.mu.Unlock()
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// A technician's password sign-in, which the console refuses after the
// API took it, leaves no API sign-in behind either.
func TestSignInTheConsoleRefusesLeavesNoAPISignIn(t *testing.T) {
	e := newEnv(t)
	e.addUser("tina", "technician pw", "")
	capture := &loginCapture{api: e.c.api}
	e.c.api = capture
	b := e.browser()
	b.get("/ui/login")
	if res, _ := b.post("/ui/login", url.Values{"user": {"tina"}, "password": {"technician pw"}}); res.StatusCode != http.StatusForbidden {
		t.Fatalf("technician's sign-in: %d, want 403", res.StatusCode)
	}
	if len(capture.refresh) != 1 {
		t.Fatalf("%d sign-ins at the API, want 1", len(capture.refresh))
	}
	if e.refreshes(capture.refresh[0]) {
		t.Error("the refresh token of a sign-in the console refused still works")
	}
}

// Run ends sessions as they expire, unvisited, and every session when
// it ends (sessions live in memory: a stopped coordinator has none), each
// with its API sign-in.
func TestRunEndsSessionsAndTheirAPISignIns(t *testing.T) {
	e := newEnvWith(t, nil, func(_ *api.Deps, c *Config) { c.SweepEvery = 10 * time.Millisecond })
	e.addUser("olga", "correct horse", "operator")
	e.addUser("rita", "read only pw", "read-only")
	olga := refreshOf(t, e.signIn("olga", "correct horse"))
	e.clock.add(20 * time.Minute)
	rita := e.signIn("rita", "read only pw")
	ritaRefresh := refreshOf(t, rita)
	e.clock.add(11 * time.Minute) // olga idle for 31 minutes, rita for 11

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testutil.Eventually(t, 10*time.Second, func() bool { return e.loggedOut("olga") }, "olga's expired session never ended")
	if e.refreshes(olga) {
		t.Error("the refresh token of a session Run ended still works")
	}
	e.c.sessions.mu.Lock()
	live := len(e.c.sessions.byID)
	e.c.sessions.mu.Unlock()
	if live != 1 || e.loggedOut("rita") {
		t.Fatalf("%d sessions live, rita signed out %v; want rita's session alone, live", live, e.loggedOut("rita"))
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	done <- nil
	if e.refreshes(ritaRefresh) {
		t.Error("the refresh token of a session live when Run ended still works")
	}
	if res, _ := rita.get("/ui/"); res.StatusCode != http.StatusSeeOther {
		t.Errorf("rita's session after Run ended: %d, want the sign-in page", res.StatusCode)
	}
}

// loggedOut says whether the audit log has a sign-out of user.
func (e *env) loggedOut(user string) bool {
	var audit struct {
		Events []struct {
			Actor string `json:"actor"`
		} `json:"events"`
	}
	e.apiDo("GET", "/v1/audit?action=logout&user="+user, nil, &audit)
	return len(audit.Events) > 0
}
