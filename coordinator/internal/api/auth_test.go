package api

import (
	"crypto/ed25519"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/coordinator/internal/auth"
	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

type revocationNotes struct{ n int }

func (r *revocationNotes) NotifyRevocations() { r.n++ }

type authAPI struct {
	srv    *httptest.Server
	st     *store.Store
	notes  *notes
	revs   *revocationNotes
	policy ed25519.PublicKey
	api    *API
}

func newAuthAPI(t *testing.T) *authAPI {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, err := auth.LoadOrCreateKey(filepath.Join(t.TempDir(), "token.key"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := auth.DefaultConfig()
	cfg.KDF, cfg.Issuer = auth.KDF{Time: 1, MemoryKiB: 1024, Threads: 1}, "sha256:test"
	reg := prometheus.NewRegistry()
	as, err := auth.New(cfg, st, key, logging.Discard(), reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := as.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(nil)
	n, rv := &notes{}, &revocationNotes{}
	a, err := New(Deps{Store: st, Files: &hashingUploader{}, Notifier: n, Signer: testSigner{priv}, Gatherer: reg,
		Logger: logging.Discard(), AdminToken: token, Auth: as, Access: rv, CAFingerprint: "sha256:test", QUICPort: "8027"}, reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return &authAPI{srv: srv, st: st, notes: n, revs: rv, policy: pub, api: a}
}

func (x *authAPI) login(t *testing.T, user, password string) string {
	t.Helper()
	code, out := call(t, x.srv, "POST", "/v1/login", `{"user":"`+user+`","password":"`+password+`"}`, "")
	if code != 200 {
		t.Fatalf("login %s: %d %v", user, code, out)
	}
	if out["ca_fingerprint"] != "sha256:test" || out["quic_port"] != "8027" {
		t.Fatalf("login answer lacks the coordinator's QUIC details: %v", out)
	}
	return out["access_token"].(string)
}

func TestRolesEnforcedPerRoute(t *testing.T) {
	x := newAuthAPI(t)
	for _, u := range []struct{ name, role string }{{"alice", "admin"}, {"oscar", "operator"}, {"rita", "read-only"}, {"tina", ""}} {
		code, out := call(t, x.srv, "POST", "/v1/users", `{"name":"`+u.name+`","role":"`+u.role+`","password":"`+u.name+`-password-1"}`, token)
		if code != 201 {
			t.Fatalf("create %s: %d %v", u.name, code, out)
		}
	}
	toks := map[string]string{"bootstrap": token}
	for _, u := range []string{"alice", "oscar", "rita", "tina"} {
		toks[u] = x.login(t, u, u+"-password-1")
	}
	routes := []struct {
		method, path, body string
		need               string // weakest role that may
	}{
		{"GET", "/v1/me", "", ""},
		{"GET", "/v1/offices", "", "read-only"},
		{"GET", "/v1/agents", "", "read-only"},
		{"GET", "/v1/offices/hq/permissions", "", "read-only"},
		{"POST", "/v1/offices", `{"name":"o-%s"}`, "operator"},
		{"PUT", "/v1/offices/hq/policy", "items: []\n", "operator"},
		{"POST", "/v1/offices/hq/tokens", `{}`, "operator"},
		{"PUT", "/v1/offices/hq/permissions", `{"grants":[{"subject":"group:techs","rights":["view"]}]}`, "admin"},
		{"GET", "/v1/users", "", "admin"},
		{"POST", "/v1/users", `{"name":"u-%s","password":"a-long-password"}`, "admin"},
		{"POST", "/v1/groups", `{"name":"g-%s"}`, "admin"},
		{"GET", "/v1/groups", "", "admin"},
		{"GET", "/v1/audit", "", "admin"},
	}
	code, out := call(t, x.srv, "POST", "/v1/offices", `{"name":"hq"}`, token)
	if code != 201 {
		t.Fatalf("create hq: %d %v", code, out)
	}
	for _, who := range []struct{ name, role string }{{"tina", ""}, {"rita", "read-only"}, {"oscar", "operator"}, {"alice", "admin"}, {"bootstrap", "admin"}} {
		for _, rt := range routes {
			t.Run(who.name+" "+rt.method+" "+rt.path, func(t *testing.T) {
				body := rt.body
				if strings.Contains(body, "%s") {
					body = strings.ReplaceAll(body, "%s", who.name)
				}
				code, out := call(t, x.srv, rt.method, rt.path, body, toks[who.name])
				allowed := auth.RoleRank(who.role) >= auth.RoleRank(rt.need)
				if allowed && code >= 300 {
					t.Fatalf("%s (role %q) refused: %d %v", who.name, who.role, code, out)
				}
				if !allowed && code != 403 {
					t.Fatalf("%s (role %q) got %d, want 403 (%v)", who.name, who.role, code, out)
				}
			})
		}
	}
	// Anonymous and bad tokens are 401 everywhere but sign-in.
	for _, tok := range []string{"", "opa_wrong", "ott1.AAAA"} {
		if code, _ := call(t, x.srv, "GET", "/v1/offices", "", tok); code != 401 {
			t.Fatalf("token %q: %d, want 401", tok, code)
		}
	}
}

func TestUserAdminChangesAreAuditedAndRevoke(t *testing.T) {
	x := newAuthAPI(t)
	mustCall := func(method, path, body string, want int) map[string]any {
		t.Helper()
		code, out := call(t, x.srv, method, path, body, token)
		if code != want {
			t.Fatalf("%s %s: %d %v, want %d", method, path, code, out, want)
		}
		return out
	}
	mustCall("POST", "/v1/users", `{"name":"tina","password":"tina-password-1"}`, 201)
	mustCall("POST", "/v1/groups", `{"name":"berlin-techs","members":["tina"]}`, 201)
	tina := x.login(t, "tina", "tina-password-1")
	if code, out := call(t, x.srv, "GET", "/v1/me", "", tina); code != 200 || out["groups"].([]any)[0] != "berlin-techs" {
		t.Fatalf("me: %d %v", code, out)
	}
	mustCall("PATCH", "/v1/groups/berlin-techs", `{"remove":["tina"]}`, 200)
	if x.revs.n != 1 {
		t.Fatalf("removing a member pushed %d revocations, want 1", x.revs.n)
	}
	if code, _ := call(t, x.srv, "GET", "/v1/me", "", tina); code != 401 {
		t.Fatalf("a token that carried a removed group still works: %d", code)
	}
	tina = x.login(t, "tina", "tina-password-1")
	mustCall("PATCH", "/v1/users/tina", `{"disabled":true}`, 200)
	if x.revs.n != 2 {
		t.Fatalf("disabling pushed %d revocations in total, want 2", x.revs.n)
	}
	if code, _ := call(t, x.srv, "GET", "/v1/me", "", tina); code != 401 {
		t.Fatal("a disabled user's token still works")
	}
	if code, out := call(t, x.srv, "POST", "/v1/login", `{"user":"tina","password":"tina-password-1"}`, ""); code != 403 || !strings.Contains(out["error"].(string), "disabled") {
		t.Fatalf("disabled login: %d %v", code, out)
	}
	if code, _ := call(t, x.srv, "PATCH", "/v1/users/admin", `{"disabled":true}`, token); code != 400 {
		t.Fatalf("the admin disabled itself: %d", code)
	}
	ev := mustCall("GET", "/v1/audit?action=group.update", "", 200)["events"].([]any)
	if len(ev) != 1 || !strings.Contains(ev[0].(map[string]any)["detail"].(string), "removed tina") {
		t.Fatalf("group change audit: %v", ev)
	}
	ev = mustCall("GET", "/v1/audit?user=admin", "", 200)["events"].([]any)
	if len(ev) < 3 {
		t.Fatalf("admin changes audited: %v", ev)
	}
}

func TestLockoutOverHTTP(t *testing.T) {
	x := newAuthAPI(t)
	call(t, x.srv, "POST", "/v1/users", `{"name":"tina","password":"tina-password-1"}`, token)
	for range 5 {
		if code, _ := call(t, x.srv, "POST", "/v1/login", `{"user":"tina","password":"nope-nope-nope"}`, ""); code != 401 {
			t.Fatalf("wrong password: %d", code)
		}
	}
	code, out := call(t, x.srv, "POST", "/v1/login", `{"user":"tina","password":"tina-password-1"}`, "")
	if code != 403 || !strings.Contains(out["error"].(string), "locked") {
		t.Fatalf("locked account: %d %v", code, out)
	}
	if code, _ := call(t, x.srv, "PATCH", "/v1/users/tina", `{"unlock":true}`, token); code != 200 {
		t.Fatal("unlock refused")
	}
	x.login(t, "tina", "tina-password-1")
	// From one address, sign-in attempts are bounded per minute.
	saw429 := false
	for range 12 {
		if code, _ := call(t, x.srv, "POST", "/v1/login", `{"user":"ghost","password":"nope-nope-nope"}`, ""); code == 429 {
			saw429 = true
		}
	}
	if !saw429 {
		t.Fatal("no 429 after 12 failed sign-ins of one name")
	}
}

func TestPermissionsAreSignedIntoPolicy(t *testing.T) {
	x := newAuthAPI(t)
	call(t, x.srv, "POST", "/v1/offices", `{"name":"berlin"}`, token)
	for _, tc := range []struct {
		body string
		code int
	}{
		{`{"grants":[{"subject":"group:berlin-techs","rights":["view","command"]},{"subject":"user:tina","rights":["command"],"deny":true}]}`, 200},
		{`{"grants":[{"subject":"team:x","rights":["view"]}]}`, 400},
		{`{"grants":[{"subject":"user:x","rights":["fly"]}]}`, 400},
		{`{"grants":[{"subject":"user:x","rights":[]}]}`, 400},
	} {
		code, out := call(t, x.srv, "PUT", "/v1/offices/berlin/permissions", tc.body, token)
		if code != tc.code {
			t.Fatalf("%s: %d %v", tc.body, code, out)
		}
		// Neither berlin-techs nor tina exists yet: kept, and said.
		if code == 200 && (len(out["warnings"].([]any)) != 2 || !strings.Contains(fmt.Sprint(out["warnings"]), "there is no group berlin-techs yet")) {
			t.Fatalf("warnings: %v", out["warnings"])
		}
	}
	p, err := x.st.Policy("berlin")
	if err != nil {
		t.Fatal(err)
	}
	var sp wire.SignedPolicy
	if err := proto.Unmarshal(p.Signed, &sp); err != nil {
		t.Fatal(err)
	}
	pol, err := wire.VerifyPolicy(x.policy, &sp)
	if err != nil {
		t.Fatal(err)
	}
	if len(pol.GetPermissions()) != 1 || len(pol.GetPermissions()[0].GetGrants()) != 2 || !pol.GetPermissions()[0].GetGrants()[1].GetDeny() {
		t.Fatalf("signed permissions: %v", pol.GetPermissions())
	}
	if len(pol.GetTokenKeys()) != 1 {
		t.Fatalf("token keys in policy: %v", pol.GetTokenKeys())
	}
	if len(x.notes.revs) != 1 {
		t.Fatalf("members were told of %d revisions, want 1", len(x.notes.revs))
	}
	// Applying YAML keeps the lists.
	setting := "items:\n  - kind: registry\n    path: /etc/sysctl.d/99-outpost.conf\n    name: vm.swappiness\n    value: 10\n"
	if code, out := call(t, x.srv, "PUT", "/v1/offices/berlin/policy", setting, token); code != 200 {
		t.Fatalf("apply: %d %v", code, out)
	}
	p, _ = x.st.Policy("berlin")
	proto.Unmarshal(p.Signed, &sp)
	pol, _ = wire.VerifyPolicy(x.policy, &sp)
	if pol.GetRevision() != 2 || len(pol.GetPermissions()) != 1 {
		t.Fatalf("after apply: revision %d, permissions %v", pol.GetRevision(), pol.GetPermissions())
	}
}

// Every admin change is in the audit trail: those whose handlers record
// detail once, the others as handle records them, failures not at all.
func TestAdminChangesAudited(t *testing.T) {
	x := newAuthAPI(t)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/offices", `{"name":"berlin"}`},
		{"PATCH", "/v1/offices/berlin", `{"description":"HQ"}`},
		{"POST", "/v1/offices/berlin/tokens", `{"uses":2}`},
		{"PUT", "/v1/offices/berlin/policy", "items: []\n"},
		{"POST", "/v1/offices/berlin/gossip-key/rotate", ""},
		{"PUT", "/v1/patch-rules/high-first", `{"min_severity":"high","test_office":"berlin"}`},
		{"DELETE", "/v1/patch-rules/high-first", ""},
	} {
		if code, out := call(t, x.srv, c.method, c.path, c.body, token); code >= 300 {
			t.Fatalf("%s %s: %d %v", c.method, c.path, code, out)
		}
	}
	if code, _ := call(t, x.srv, "DELETE", "/v1/offices/nowhere", "", token); code != 404 {
		t.Fatalf("deleting a missing office: %d", code)
	}
	code, out := call(t, x.srv, "GET", "/v1/audit?user=admin&limit=100", "", token)
	if code != 200 {
		t.Fatalf("audit: %d %v", code, out)
	}
	var got []string
	for _, e := range out["events"].([]any) {
		e := e.(map[string]any)
		if e["actor"] != "admin" || e["allowed"] != true {
			t.Errorf("event %v", e)
		}
		got = append(got, fmt.Sprint(e["action"], " | ", e["target"]))
	}
	slices.Reverse(got) // newest first
	want := []string{"office.create | office berlin", "office.update | office berlin", "token.create | office berlin",
		"office.policy | office berlin", "office.gossip_key | office berlin", "patch_rule.put | patch rule high-first",
		"patch_rule.delete | patch rule high-first"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("audit trail:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The audit trail of a host is found by its hostname too, and holds the
// coordinator's events about it as well as its own.
func TestAuditByHost(t *testing.T) {
	x := newAuthAPI(t)
	call(t, x.srv, "POST", "/v1/offices", `{"name":"berlin"}`, token)
	call(t, x.srv, "POST", "/v1/offices", `{"name":"paris"}`, token)
	enrolAgent(t, x.st, "berlin", "ag-3f9c2a0011223344", "pc-17")
	if err := x.st.AppendAudit(store.AuditEvent{At: time.Now(), Actor: "tina", Action: "exec", Detail: "exec true", Allowed: true, Source: "ag-3f9c2a0011223344"}); err != nil {
		t.Fatal(err)
	}
	if code, out := call(t, x.srv, "POST", "/v1/agents/pc-17/move", `{"office":"paris"}`, token); code != 200 {
		t.Fatalf("move: %d %v", code, out)
	}
	for _, host := range []string{"PC-17", "ag-3f9c2a0011223344", "ag-3f9c"} {
		code, out := call(t, x.srv, "GET", "/v1/audit?host="+host, "", token)
		var got []string
		for _, e := range out["events"].([]any) {
			got = append(got, e.(map[string]any)["action"].(string))
		}
		if code != 200 || !reflect.DeepEqual(got, []string{"agent.move", "exec"}) {
			t.Errorf("audit of %s: %d %v", host, code, got)
		}
	}
	if code, out := call(t, x.srv, "GET", "/v1/audit?host=ag-0000000000000000", "", token); code != 200 || len(out["events"].([]any)) != 0 {
		t.Errorf("audit of a host never enrolled: %d %v", code, out)
	}
}

// A user deleted and made again under the same name does not get the old
// user's tokens back: they were issued before the new user existed.
func TestRecreatedUserDoesNotInheritTokens(t *testing.T) {
	x := newAuthAPI(t)
	if code, out := call(t, x.srv, "POST", "/v1/users", `{"name":"tom","password":"tom-password-1"}`, token); code != 201 {
		t.Fatalf("create: %d %v", code, out)
	}
	old := x.login(t, "tom", "tom-password-1")
	if code, out := call(t, x.srv, "DELETE", "/v1/users/tom", "", token); code != 200 {
		t.Fatalf("delete: %d %v", code, out)
	}
	time.Sleep(2 * time.Millisecond) // tokens are stamped in milliseconds
	if code, out := call(t, x.srv, "POST", "/v1/users", `{"name":"tom","password":"other-password-1"}`, token); code != 201 {
		t.Fatalf("create again: %d %v", code, out)
	}
	if code, out := call(t, x.srv, "GET", "/v1/me", "", old); code != 401 {
		t.Fatalf("the deleted user's token speaks for the new tom: %d %v", code, out)
	}
	if code, _ := call(t, x.srv, "GET", "/v1/me", "", x.login(t, "tom", "other-password-1")); code != 200 {
		t.Fatal("the new tom's own token is refused")
	}
}
