package cli

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
)

// A sign-in's token goes to the coordinator that issued it and to no
// other: without --server the commands go there, and another --server is
// refused before anything is sent (the review saw the token sent, over
// plain HTTP, to whatever --server named, the default included).
func TestSignInTokenGoesOnlyToItsCoordinator(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("hq", nil)
	c.MustDo("POST", "/v1/users", map[string]any{"name": "olga", "password": "olga-password-1", "role": "read-only"}, nil)
	olga := newSignedIn(t, c)
	if res := olga.run("olga-password-1\n", "login", "olga", "--password-stdin"); res.code != 0 {
		t.Fatalf("login: %+v", res)
	}

	var got atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			got.Add(1)
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	defer other.Close()

	olga.env["OUTPOST_SERVER"] = other.URL
	res := olga.run("", "office", "list")
	if res.code != 1 || !strings.Contains(res.stderr, "the sign-in of olga kept by outpost login is for "+c.URL+", not "+other.URL) || got.Load() != 0 {
		t.Fatalf("office list against another server: %+v; the other server got %d tokens", res, got.Load())
	}

	delete(olga.env, "OUTPOST_SERVER") // the default would be 127.0.0.1:8020
	if res := olga.run("", "office", "list"); res.code != 0 || !strings.Contains(res.stdout, "hq") {
		t.Fatalf("office list without --server: %+v", res)
	}
}

// A damaged sign-in is told as damaged, not as "not signed in" (which sent
// the user to a login that then lost the pinned CA as well).
func TestDamagedSignInIsToldAsDamaged(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "credentials.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	res := runCLI(t, nil, cliRun{env: map[string]string{"OUTPOST_TOKEN": "", "OUTPOST_CONFIG_DIR": dir, "OUTPOST_SERVER": "http://127.0.0.1:1"}}, "office", "list")
	if res.code != 1 || !strings.Contains(res.stderr, "credentials.json is damaged") {
		t.Fatalf("office list with a damaged sign-in: %+v", res)
	}
}

// After outpost logout, a bare outpost login signs the same user in again
// at the same coordinator, with its CA still pinned.
func TestLoginAfterLogoutNeedsNoArguments(t *testing.T) {
	c := coordinatortest.New(t)
	c.MustDo("POST", "/v1/users", map[string]any{"name": "olga", "password": "olga-password-1", "role": "read-only"}, nil)
	olga := newSignedIn(t, c)
	if res := olga.run("olga-password-1\n", "login", "olga", "--password-stdin"); res.code != 0 {
		t.Fatalf("login: %+v", res)
	}
	if res := olga.run("", "logout"); res.code != 0 {
		t.Fatalf("logout: %+v", res)
	}
	delete(olga.env, "OUTPOST_SERVER")
	if res := olga.run("olga-password-1\n", "login", "--password-stdin"); res.code != 0 || !strings.Contains(res.stdout+res.stderr, "olga") {
		t.Fatalf("a bare login after logout: %+v", res)
	}
	if res := olga.run("", "office", "list"); res.code != 0 {
		t.Fatalf("office list after signing in again: %+v", res)
	}
}
