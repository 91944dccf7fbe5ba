package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
)

// signedIn is a person using the CLI against a real coordinator, with a
// config directory of their own and no admin token.
type signedIn struct {
	tb  testing.TB
	env map[string]string
}

func newSignedIn(tb testing.TB, c *coordinatortest.Harness) *signedIn {
	tb.Helper()
	return &signedIn{tb: tb, env: map[string]string{"OUTPOST_SERVER": c.URL, "OUTPOST_CONFIG_DIR": tb.TempDir()}}
}

func (s *signedIn) run(stdin string, args ...string) cliResult {
	s.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := Main(ctx, args, strings.NewReader(stdin), &stdout, &stderr, func(k string) string { return s.env[k] })
	return cliResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// A 401 says what to do about the credential that was refused: a password
// at sign-in, a kept sign-in that ended, or nothing at all.
func TestRefusalsNameTheCredential(t *testing.T) {
	c := coordinatortest.New(t)
	c.MustDo("POST", "/v1/users", map[string]any{"name": "tina", "password": "tina-password-1"}, nil)
	c.MustDo("POST", "/v1/users", map[string]any{"name": "olga", "password": "olga-password-1", "role": "read-only"}, nil)

	t.Run("a wrong password", func(t *testing.T) {
		res := newSignedIn(t, c).run("not-her-password\n", "login", "tina", "--password-stdin")
		want{code: 1, stderr: "outpost: login: sign-in refused: user name or password is wrong\n"}.check(t, res)
	})

	t.Run("the kept sign-in of a disabled technician", func(t *testing.T) {
		tina := newSignedIn(t, c)
		if res := tina.run("tina-password-1\n", "login", "tina", "--password-stdin"); res.code != 0 {
			t.Fatalf("login: %+v", res)
		}
		c.MustDo("PATCH", "/v1/users/tina", map[string]any{"disabled": true}, nil)
		t.Cleanup(func() { c.MustDo("PATCH", "/v1/users/tina", map[string]any{"disabled": false}, nil) })
		res := tina.run("", "agent", "list")
		want{code: 1, stderrHas: []string{"refused the sign-in of tina kept by outpost login (", "sign in again with: outpost login tina"}}.check(t, res)
		if strings.Contains(res.stderr, "admin token") {
			t.Errorf("a technician is told about the admin token:\n%s", res.stderr)
		}
	})

	t.Run("after logout both ways in are named", func(t *testing.T) {
		olga := newSignedIn(t, c)
		if res := olga.run("olga-password-1\n", "login", "olga", "--password-stdin"); res.code != 0 {
			t.Fatalf("login: %+v", res)
		}
		if res := olga.run("", "agent", "list"); res.code != 0 {
			t.Fatalf("agent list while signed in: %+v", res)
		}
		want{stdout: "signed out\n"}.check(t, olga.run("", "logout"))
		res := olga.run("", "agent", "list")
		want{code: 1, stderrHas: []string{"not signed in and no admin token: sign in with outpost login USER, or pass the admin token with --token or OUTPOST_TOKEN"}}.check(t, res)
	})

	t.Run("a wrong admin token keeps its hint", func(t *testing.T) {
		s := newSignedIn(t, c)
		s.env["OUTPOST_TOKEN"] = "not-the-admin-token"
		res := s.run("", "agent", "list")
		want{code: 1, stderrHas: []string{"refused the admin token (", "--token or OUTPOST_TOKEN"}}.check(t, res)
	})
}

func TestLoginUser(t *testing.T) {
	var users []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		users = append(users, string(b))
		writeAnswer(w, 200, `{"access_token":"opu_x","refresh_token":"r","expires":"2025-06-01T13:00:00Z","user":"tina","role":"","groups":[]}`)
	}))
	t.Cleanup(srv.Close)
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		want  want
		wantU string
	}{
		{
			name: "without USER or OUTPOST_USER both are named",
			args: []string{"login", "--password-stdin"},
			want: want{code: 2, stderrHas: []string{"outpost: login: name the USER to sign in as: outpost login USER, or set OUTPOST_USER"}},
		},
		{
			name:  "OUTPOST_USER stands in for USER",
			env:   map[string]string{"OUTPOST_USER": "tina"},
			args:  []string{"login", "--password-stdin"},
			want:  want{stderr: "", stdout: "signed in as tina (technician) on http://127.0.0.1:"},
			wantU: `{"password":"pw","user":"tina"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			users = nil
			env := map[string]string{"OUTPOST_SERVER": srv.URL, "OUTPOST_TOKEN": "", "OUTPOST_CONFIG_DIR": t.TempDir()}
			for k, v := range tt.env {
				env[k] = v
			}
			res := runCLI(t, nil, cliRun{env: env, stdin: strings.NewReader("pw\n")}, tt.args...)
			if tt.want.code == 0 {
				// The time of day is the local zone's: compare the start.
				if res.code != 0 || !strings.HasPrefix(res.stdout, tt.want.stdout) {
					t.Errorf("exit %d, stdout %q, stderr %q; want 0 and %q...", res.code, res.stdout, res.stderr, tt.want.stdout)
				}
			} else {
				tt.want.check(t, res)
			}
			if tt.wantU != "" && (len(users) != 1 || !sameBody([]byte(users[0]), []byte(tt.wantU))) {
				t.Errorf("sign-in requests %q, want one %s", users, tt.wantU)
			}
		})
	}
}

// Commands run at once (a loop over hosts, two terminals) refresh one
// sign-in once between them: a refresh token presented twice would revoke
// every token of the sign-in.
func TestParallelCommandsRefreshOnce(t *testing.T) {
	c := coordinatortest.New(t, coordinatortest.WithConfig(func(cfg *coordinator.Config) {
		cfg.AccessTokenTTL = 30 * time.Second // under a minute: every command refreshes
	}))
	c.MustDo("POST", "/v1/users", map[string]any{"name": "tina", "password": "tina-password-1", "role": "read-only"}, nil)
	tina := newSignedIn(t, c)
	if res := tina.run("tina-password-1\n", "login", "tina", "--password-stdin"); res.code != 0 {
		t.Fatalf("login: %+v", res)
	}
	for round := range 3 {
		var wg sync.WaitGroup
		results := make([]cliResult, 8)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = tina.run("", "office", "list")
			}()
		}
		wg.Wait()
		for i, res := range results {
			if res.code != 0 {
				t.Fatalf("round %d, command %d: %+v", round, i, res)
			}
		}
	}
}

// outpost logout ends the sign-in on the coordinator too: a copy of the
// kept sign-in refreshes no more. The coordinator's CA stays pinned.
func TestLogoutEndsTheSignInEverywhere(t *testing.T) {
	c := coordinatortest.New(t, coordinatortest.WithConfig(func(cfg *coordinator.Config) {
		cfg.AccessTokenTTL = 30 * time.Second // under a minute: every command refreshes
	}))
	c.MustDo("POST", "/v1/users", map[string]any{"name": "tina", "password": "tina-password-1", "role": "read-only"}, nil)
	tina := newSignedIn(t, c)
	if res := tina.run("tina-password-1\n", "login", "tina", "--password-stdin"); res.code != 0 {
		t.Fatalf("login: %+v", res)
	}
	path := filepath.Join(tina.env["OUTPOST_CONFIG_DIR"], "credentials.json")
	copied, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want{stdout: "signed out\n"}.check(t, tina.run("", "logout"))
	kept, _ := os.ReadFile(path)
	if !strings.Contains(string(kept), `"ca_fingerprint": "`+c.CA) || strings.Contains(string(kept), "otr_") {
		t.Fatalf("after logout the file holds:\n%s", kept)
	}
	want{stdout: "not signed in\n"}.check(t, tina.run("", "logout"))
	// Someone who copied the sign-in before.
	if err := os.WriteFile(path, copied, 0o600); err != nil {
		t.Fatal(err)
	}
	if res := tina.run("", "office", "list"); res.code == 0 || !strings.Contains(res.stderr, "sign in again") {
		t.Fatalf("a copy of the sign-in after logout: %+v", res)
	}
	var audit struct {
		Events []struct{ Actor, Action string }
	}
	c.MustDo("GET", "/v1/audit?action=logout", nil, &audit)
	if len(audit.Events) != 1 || audit.Events[0].Actor != "tina" {
		t.Fatalf("logout audit: %+v", audit.Events)
	}
}
