package api

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/logging"
)

// online is a Presence with a fixed set of connected members.
type online map[string]bool

func (o online) Connected(id string) bool { return o[id] }

// newAPIWith is newAPI with the members in presence connected.
func newAPIWith(t *testing.T, presence online) (*httptest.Server, *store.Store) {
	t.Helper()
	return newAPIDeps(t, Deps{Presence: presence})
}

// newAPIDeps is newAPI with d's Presence, PublicAddress and CAFingerprint.
func newAPIDeps(t *testing.T, d Deps) (*httptest.Server, *store.Store) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	_, priv, _ := ed25519.GenerateKey(nil)
	reg := prometheus.NewRegistry()
	a, err := New(Deps{Store: st, Files: &hashingUploader{}, Notifier: &notes{}, Presence: d.Presence, Signer: testSigner{priv},
		Gatherer: reg, Logger: logging.Discard(), AdminToken: token, PublicAddress: d.PublicAddress, CAFingerprint: d.CAFingerprint}, reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return srv, st
}

// enrolled enrols hostname into office through the store's real enrollment
// transaction, with a token made for it, and returns the member.
func enrolled(t *testing.T, st *store.Store, office, id, hostname string) store.Member {
	t.Helper()
	secret := "opt_" + id
	sum := sha256.Sum256([]byte(secret))
	h := hex.EncodeToString(sum[:])
	if err := st.CreateToken(store.Token{ID: id, Hash: h, Office: office, Role: "agent", Expires: time.Now().Add(time.Hour), Uses: 1}); err != nil {
		t.Fatal(err)
	}
	m, _, err := st.Enroll(h, time.Now(), func(tok store.Token, o store.Office) (store.Member, error) {
		return store.Member{ID: id, Hostname: hostname, Office: o.Name, Home: o.Name, Role: "agent", Enrolled: time.Now()}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return *m
}

func agentIDs(out map[string]any) []string {
	ids := []string{}
	list, _ := out["agents"].([]any)
	for _, a := range list {
		ids = append(ids, a.(map[string]any)["id"].(string))
	}
	sort.Strings(ids)
	return ids
}

func TestAgentSearch(t *testing.T) {
	srv, st := newAPIWith(t, online{"ag-1": true, "ag-3": true})
	for _, o := range []string{"berlin", "hamburg"} {
		if code, out := call(t, srv, "POST", "/v1/offices", `{"name":"`+o+`"}`, token); code != 201 {
			t.Fatalf("create %s: %d %v", o, code, out)
		}
	}
	enrolled(t, st, "berlin", "ag-1", "PC-Berlin-1")
	enrolled(t, st, "berlin", "ag-2", "pc-berlin-2")
	enrolled(t, st, "hamburg", "ag-3", "laptop-anna")
	if _, err := st.UpdateMember("ag-3", func(m *store.Member) { m.Roaming = true }); err != nil {
		t.Fatal(err)
	}
	// berlin asks for revision 1 that ag-2 has applied; ag-1 reports nothing.
	if _, err := st.ApplyPolicy("berlin", "items: []\n", time.Now(), func(uint64) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateMember("ag-2", func(m *store.Member) { m.Report = &store.Report{Revision: 1} }); err != nil {
		t.Fatal(err)
	}
	// ag-1 (connected) and ag-2 were last heard of 40 days ago, ag-3 just
	// now; ag-4 enrolled 40 days ago and never checked in.
	for id, ago := range map[string]time.Duration{"ag-1": 40 * 24 * time.Hour, "ag-2": 40 * 24 * time.Hour, "ag-3": 0} {
		if _, err := st.UpdateMember(id, func(m *store.Member) { m.LastSeen = time.Now().Add(-ago) }); err != nil {
			t.Fatal(err)
		}
	}
	enrolled(t, st, "hamburg", "ag-4", "pc-never")
	if _, err := st.UpdateMember("ag-4", func(m *store.Member) { m.Enrolled = time.Now().Add(-40 * 24 * time.Hour) }); err != nil {
		t.Fatal(err)
	}
	// An upgrade under way: ag-1 and ag-3 run 1.6.0; ag-2 found 1.6.0 in
	// place of its executable and refused it.
	for id, v := range map[string]string{"ag-1": "1.6.0", "ag-2": "1.5.2", "ag-3": "1.6.0"} {
		if _, err := st.UpdateMember(id, func(m *store.Member) { m.Version = v }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.UpdateMember("ag-2", func(m *store.Member) { m.UpgradeProblem = "the new executable was refused" }); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateMember("ag-3", func(m *store.Member) {
		m.LastHang = "restarted itself at 2026-11-28T12:00:00Z: no progress for 40m0s while checking in"
	}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		query string
		want  string // ids, comma-separated
	}{
		{"", "ag-1,ag-2,ag-3,ag-4"},
		{"?q=berlin", "ag-1,ag-2"},
		{"?q=pc-berlin-1", "ag-1"}, // case does not matter
		{"?q=AG-3", "ag-3"},        // ids match too
		{"?q=nobody", ""},
		{"?state=online", "ag-1,ag-3"},
		{"?state=offline", "ag-2,ag-4"},
		{"?state=roaming", "ag-3"},
		{"?state=compliant", "ag-2,ag-3,ag-4"}, // hamburg asks nothing of ag-3 and ag-4
		{"?state=noncompliant", "ag-1"},
		{"?office=berlin&state=online", "ag-1"},
		{"?office=hamburg&q=pc", "ag-4"},
		{"?office=berlin&q=2&state=compliant", "ag-2"},
		{"?not_seen=720h", "ag-2,ag-4"}, // ag-1 is connected
		{"?not_seen=1000h", ""},
		{"?office=berlin&not_seen=720h", "ag-2"},
		{"?state=compliant&not_seen=720h", "ag-2,ag-4"},
		{"?version=1.6.0", "ag-1,ag-3"},
		{"?not_version=1.6.0", "ag-2,ag-4"}, // ag-4 never said its version
		{"?office=berlin&not_version=1.6.0", "ag-2"},
		{"?version=1.6.0&not_version=1.6.0", ""},
		{"?state=upgrade-refused", "ag-2"},
		{"?state=hung", "ag-3"},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			code, out := call(t, srv, "GET", "/v1/agents"+tc.query, "", token)
			if code != 200 {
				t.Fatalf("status %d: %v", code, out)
			}
			if got := strings.Join(agentIDs(out), ","); got != tc.want {
				t.Fatalf("agents %q, want %q", got, tc.want)
			}
		})
	}
	for query, errHas := range map[string]string{
		"?state=asleep":                  `state "asleep": want online`,
		"?office=paris":                  "office paris",
		"?q=" + strings.Repeat("x", 300): "longer than a hostname",
		"?not_seen=30d":                  `not_seen "30d": want a positive duration`,
		"?not_seen=-1h":                  `not_seen "-1h": want a positive duration`,
		"?version=":                      "version: want one version",
		"?not_version=a&not_version=b":   "not_version: want one version",
	} {
		code, out := call(t, srv, "GET", "/v1/agents"+query, "", token)
		if code/100 != 4 || !strings.Contains(out["error"].(string), errHas) {
			t.Errorf("GET /v1/agents%s: %d %v, want a 4xx mentioning %q", query[:min(len(query), 20)], code, out, errHas)
		}
	}
}
