package console

import (
	"maps"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Signing in from a browser that still holds a session (a sign-in form
// left open in another tab, or posted again) ends that session and its
// sign-in at the API: the browser's cookie is replaced, and the old id
// and refresh token would otherwise stay good until the session expired,
// for whoever had seen them.
func TestSignInEndsTheSessionTheBrowserHad(t *testing.T) {
	e := newEnv(t)
	e.addUser("olga", "correct horse", "operator")
	e.addUser("rita", "read only pw", "read-only")
	b := e.browser()
	b.get("/ui/login")
	// A second tab with the sign-in form, opened before the first signs in.
	tab := maps.Clone(b.cookies)
	tabCSRF := b.csrf
	if res, _ := b.post("/ui/login", url.Values{"user": {"olga"}, "password": {"correct horse"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("olga signs in: %d", res.StatusCode)
	}
	old := b.cookies[sessionCookie]
	oldRefresh := refreshOf(t, b)
	b.cookies[loginCookie] = tab[loginCookie]
	if res, body := b.post("/ui/login", url.Values{"user": {"rita"}, "password": {"read only pw"}, "csrf": {tabCSRF}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("rita signs in from the other tab: %d\n%s", res.StatusCode, body)
	}
	if b.cookies[sessionCookie] == old {
		t.Fatal("the session id did not change at sign-in")
	}
	stale := e.browser()
	stale.cookies[sessionCookie] = old
	if res, _ := stale.get("/ui/"); res.StatusCode != http.StatusSeeOther {
		t.Errorf("olga's session after rita signed in from its browser: %d, want the sign-in page", res.StatusCode)
	}
	if e.refreshes(oldRefresh) {
		t.Error("olga's refresh token still works")
	}
	if !e.loggedOut("olga") {
		t.Error("the audit log has no sign-out of olga")
	}
	if _, body := b.get("/ui/"); !strings.Contains(body, "rita · read-only") {
		t.Error("the browser is not rita's")
	}
}
