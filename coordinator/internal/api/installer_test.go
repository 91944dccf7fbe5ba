package api

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

func TestInstallerValues(t *testing.T) {
	const fp = "sha256:0123"
	srv, st := newAPIDeps(t, Deps{PublicAddress: "outpost.example.org:443", CAFingerprint: fp})
	call(t, srv, "POST", "/v1/offices", `{"name":"berlin"}`, token)

	tests := []struct {
		name, path, body string
		code             int
		errHas           string
		uses             float64
		ttl              time.Duration
	}{
		{name: "defaults", path: "/v1/offices/berlin/installer", code: 201, uses: 100, ttl: 7 * 24 * time.Hour},
		{name: "uses and ttl", path: "/v1/offices/berlin/installer", body: `{"uses":25,"ttl":"48h"}`, code: 201, uses: 25, ttl: 48 * time.Hour},
		{name: "unknown office", path: "/v1/offices/paris/installer", code: 404, errHas: "office paris (of the installer) does not exist"},
		{name: "bad uses", path: "/v1/offices/berlin/installer", body: `{"uses":0}`, code: 400, errHas: "uses 0"},
		{name: "bad ttl", path: "/v1/offices/berlin/installer", body: `{"ttl":"1s"}`, code: 400, errHas: "ttl"},
		{name: "unknown field", path: "/v1/offices/berlin/installer", body: `{"role":"relay"}`, code: 400, errHas: "role"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out := call(t, srv, "POST", tc.path, tc.body, token)
			if code != tc.code {
				t.Fatalf("status %d, want %d (%v)", code, tc.code, out)
			}
			if tc.errHas != "" {
				if !strings.Contains(out["error"].(string), tc.errHas) {
					t.Fatalf("error %q does not mention %q", out["error"], tc.errHas)
				}
				return
			}
			if out["coordinator"] != "outpost.example.org:443" || out["ca_fingerprint"] != fp || out["office"] != "berlin" || out["uses"] != tc.uses {
				t.Fatalf("answer %v", out)
			}
			expires, _ := time.Parse(time.RFC3339, out["expires"].(string))
			if d := time.Until(expires) - tc.ttl; d > time.Minute || d < -time.Minute {
				t.Fatalf("expires %v, want in %v", expires, tc.ttl)
			}
			// The secret is a working agent token of the office.
			sum := sha256.Sum256([]byte(out["token"].(string)))
			m, o, err := st.Enroll(hex.EncodeToString(sum[:]), time.Now(), func(tok store.Token, o store.Office) (store.Member, error) {
				if tok.Role != "agent" {
					t.Errorf("role %s, want agent", tok.Role)
				}
				return store.Member{ID: "ag-" + tc.name, Hostname: "pc", Office: o.Name, Home: o.Name, Role: "agent"}, nil
			})
			if err != nil || o.Name != "berlin" || m.Office != "berlin" {
				t.Fatalf("enrol with the installer's token: %v %v %v", m, o, err)
			}
		})
	}

	// An upgrade installer makes no token.
	before, _ := st.Tokens("berlin")
	code, out := call(t, srv, "POST", "/v1/offices/berlin/installer", `{"upgrade":true}`, token)
	if code != 200 || out["coordinator"] != "outpost.example.org:443" || out["ca_fingerprint"] != fp || out["token"] != nil || out["token_id"] != nil || out["expires"] != nil {
		t.Fatalf("upgrade installer: %d %v", code, out)
	}
	if after, _ := st.Tokens("berlin"); len(after) != len(before) {
		t.Fatalf("an upgrade installer made a token: %d tokens, were %d", len(after), len(before))
	}
	if code, out := call(t, srv, "POST", "/v1/offices/berlin/installer", `{"upgrade":true,"uses":5}`, token); code != 400 || !strings.Contains(out["error"].(string), "no token: ttl and uses do not apply") {
		t.Fatalf("upgrade with uses: %d %v", code, out)
	}

	srv2, _ := newAPIDeps(t, Deps{})
	call(t, srv2, "POST", "/v1/offices", `{"name":"berlin"}`, token)
	if code, out := call(t, srv2, "POST", "/v1/offices/berlin/installer", "", token); code != 503 || !strings.Contains(out["error"].(string), "public_address") {
		t.Fatalf("without a public address: %d %v", code, out)
	}
}
