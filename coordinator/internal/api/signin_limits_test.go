package api

import (
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// A password an admin resets (the usual answer to "my password leaked" or
// "my laptop was stolen") ends the sign-ins made with the old one: else
// whoever holds an old refresh token keeps refreshing for ever.
func TestAPasswordChangeEndsTheUsersSignIns(t *testing.T) {
	x := newAuthAPI(t)
	if code, out := call(t, x.srv, "POST", "/v1/users", `{"name":"tina","role":"read-only","password":"tina-password-1"}`, token); code != 201 {
		t.Fatalf("create tina: %d %v", code, out)
	}
	code, out := call(t, x.srv, "POST", "/v1/login", `{"user":"tina","password":"tina-password-1"}`, "")
	if code != 200 {
		t.Fatalf("login: %d %v", code, out)
	}
	access, refresh := out["access_token"].(string), out["refresh_token"].(string)
	time.Sleep(5 * time.Millisecond) // the not-before time is in milliseconds

	if code, out := call(t, x.srv, "PATCH", "/v1/users/tina", `{"password":"a-brand-new-password-2"}`, token); code != 200 {
		t.Fatalf("reset password: %d %v", code, out)
	}
	if code, out := call(t, x.srv, "POST", "/v1/login/refresh", `{"refresh_token":"`+refresh+`"}`, ""); code != 401 {
		t.Errorf("a refresh token issued before the password was changed still refreshes: %d %v; want 401", code, out)
	}
	if code, out := call(t, x.srv, "GET", "/v1/me", "", access); code != 401 {
		t.Errorf("an access token issued before the password was changed still works: %d %v; want 401", code, out)
	}
}

// POST /v1/login needs no credential, and every failed attempt goes into
// the audit trail, kept for good: the name it records is bounded, so that
// nobody writes a megabyte of audit trail a request.
func TestSignInAttemptsAuditBoundedUserNames(t *testing.T) {
	x := newAuthAPI(t)
	huge := strings.Repeat("a", 512<<10)
	code, out := call(t, x.srv, "POST", "/v1/login", `{"user":"`+huge+`","password":"x"}`, "")
	if code != 400 && code != 401 {
		t.Fatalf("login with a 512 KiB user name: %d %v", code, out)
	}
	events, err := x.st.Audit(store.AuditFilter{Action: "login"})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if len(ev.Actor) > 1024 {
			t.Errorf("an unauthenticated sign-in attempt stored an audit event with a %d-byte actor (answer %d); want names refused (400) or cut to their 64-character limit before they are recorded", len(ev.Actor), code)
		}
	}
}
