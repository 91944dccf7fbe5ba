package api

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

// upload pushes bytes as an artifact and returns its hash.
func uploadBytes(t *testing.T, srv *httptest.Server, name, body string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/artifacts?name="+name, bytes.NewReader([]byte(body)))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("upload: %v %v", resp, err)
	}
	defer resp.Body.Close()
	var art store.Artifact
	json.NewDecoder(resp.Body).Decode(&art)
	return art.SHA256
}

// enrolAgent puts an agent straight into the store.
func enrolAgent(t testing.TB, st *store.Store, office, id, hostname string) {
	t.Helper()
	tok := store.Token{ID: "t-" + id, Hash: "h-" + id, Office: office, Role: "agent", Uses: 1, Expires: time.Now().Add(time.Hour)}
	if err := st.CreateToken(tok); err != nil {
		t.Fatal(err)
	}
	_, _, err := st.Enroll(tok.Hash, time.Now(), func(store.Token, store.Office) (store.Member, error) {
		return store.Member{ID: id, Hostname: hostname, Office: office, Home: office, Role: "agent"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func pkgYAML(header, name, version, sha string) string {
	return header + "items:\n  - kind: package\n    name: " + name + "\n    version: \"" + version + "\"\n    artifact: " + sha + "\n"
}

// signedPolicy decodes signed bytes as the agent would see them.
func signedPolicy(t *testing.T, b []byte) *wire.Policy {
	t.Helper()
	var sp wire.SignedPolicy
	var p wire.Policy
	if err := proto.Unmarshal(b, &sp); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(sp.GetPolicy(), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func versions(p *wire.Policy) map[string]string {
	out := map[string]string{}
	for _, it := range p.GetItems() {
		out[it.GetId()] = it.GetPackage().GetVersion()
	}
	return out
}

func TestNamedPoliciesMergeIntoVariants(t *testing.T) {
	srv, st, _ := newAPI(t)
	call(t, srv, "POST", "/v1/offices", `{"name":"berlin"}`, token)
	v1 := uploadBytes(t, srv, "hello-1.tar.gz", "hello one")
	v2 := uploadBytes(t, srv, "hello-2.tar.gz", "hello two")
	tools := uploadBytes(t, srv, "tools.tar.gz", "tools")
	enrolAgent(t, st, "berlin", "ag-0000000000000001", "pc-1.corp.example")
	enrolAgent(t, st, "berlin", "ag-0000000000000002", "pc-2")

	if code, out := call(t, srv, "PUT", "/v1/offices/berlin/policy", pkgYAML("", "hello", "1", v1), token); code != 200 {
		t.Fatalf("office policy: %d %v", code, out)
	}
	// Without targeting, no variants: the office's policy is everyone's.
	p, _ := st.Policy("berlin")
	if pw := signedPolicy(t, p.Signed); len(pw.GetVariantAgents()) != 0 || pw.GetAgent() != "" {
		t.Fatalf("office-wide policy without targeting: %v", pw)
	}

	if code, out := call(t, srv, "PATCH", "/v1/agents/pc-1.corp.example/labels", `{"set":{"kiosk":"","floor":"3"}}`, token); code != 200 {
		t.Fatalf("label: %d %v", code, out)
	} else if !reflect.DeepEqual(out["labels"], map[string]any{"kiosk": "", "floor": "3"}) {
		t.Fatalf("labels shown: %v", out["labels"])
	}
	code, out := call(t, srv, "PUT", "/v1/policies/kiosks", pkgYAML("targets: {labels: [kiosk]}\n", "hello", "2", v2), token)
	if code != 201 {
		t.Fatalf("named policy: %d %v", code, out)
	}
	if pub := out["published"].(map[string]any); pub["berlin"] == nil {
		t.Fatalf("berlin not republished: %v", out)
	}
	code, out = call(t, srv, "PUT", "/v1/policies/pc-2-tools", pkgYAML("targets: {agents: [pc-2]}\n", "tools", "1", tools), token)
	if code != 201 {
		t.Fatalf("agent policy: %d %v", code, out)
	}

	p, _ = st.Policy("berlin")
	wide := signedPolicy(t, p.Signed)
	if !reflect.DeepEqual(wide.GetVariantAgents(), []string{"ag-0000000000000001", "ag-0000000000000002"}) || !reflect.DeepEqual(versions(wide), map[string]string{"package/hello": "1"}) {
		t.Fatalf("office-wide: variants %v items %v", wide.GetVariantAgents(), versions(wide))
	}
	// What only variants name is there for relays to pre-stage.
	var extra []string
	for _, a := range wide.GetVariantArtifacts() {
		extra = append(extra, a.GetSha256())
	}
	want := []string{v2, tools}
	sort.Strings(want)
	if !reflect.DeepEqual(extra, want) {
		t.Fatalf("variant artifacts %v, want %v", extra, want)
	}
	for id, want := range map[string]map[string]string{
		"ag-0000000000000001": {"package/hello": "2"},
		"ag-0000000000000002": {"package/hello": "1", "package/tools": "1"},
	} {
		v, err := st.Variant("berlin", id)
		if err != nil || v.Revision != p.Revision {
			t.Fatalf("variant of %s: %+v %v (office at %d)", id, v, err, p.Revision)
		}
		pv := signedPolicy(t, v.Signed)
		if pv.GetAgent() != id || pv.GetOffice() != "berlin" || pv.GetRevision() != p.Revision || !reflect.DeepEqual(versions(pv), want) {
			t.Fatalf("variant of %s: agent %q office %q rev %d items %v, want %v", id, pv.GetAgent(), pv.GetOffice(), pv.GetRevision(), versions(pv), want)
		}
	}

	code, out = call(t, srv, "GET", "/v1/offices/berlin/policy", "", token)
	if code != 200 || !reflect.DeepEqual(out["variants"], []any{"ag-0000000000000001", "ag-0000000000000002"}) {
		t.Fatalf("office policy: %d %v", code, out)
	}
	code, out = call(t, srv, "GET", "/v1/agents/ag-0000000000000001/policy", "", token)
	if code != 200 || out["variant"] != true {
		t.Fatalf("effective: %d %v", code, out)
	}
	items := out["items"].([]any)
	first := items[0].(map[string]any)
	if len(items) != 1 || first["id"] != "package/hello" || first["policy"] != "kiosks" || first["level"] != "label" ||
		!reflect.DeepEqual(first["overridden"], []any{"office:berlin"}) {
		t.Fatalf("effective items: %v", items)
	}

	code, out = call(t, srv, "GET", "/v1/policies/kiosks", "", token)
	if code != 200 || !reflect.DeepEqual(out["computers"], []any{"pc-1.corp.example"}) {
		t.Fatalf("show: %d %v", code, out)
	}
	code, out = call(t, srv, "GET", "/v1/policies", "", token)
	if code != 200 || len(out["policies"].([]any)) != 2 {
		t.Fatalf("list: %d %v", code, out)
	}

	// Removing the label policy gives pc-1 the office's policy again.
	if code, out := call(t, srv, "DELETE", "/v1/policies/kiosks", "", token); code != 204 {
		t.Fatalf("delete: %d %v", code, out)
	}
	p, _ = st.Policy("berlin")
	if wide := signedPolicy(t, p.Signed); !reflect.DeepEqual(wide.GetVariantAgents(), []string{"ag-0000000000000002"}) {
		t.Fatalf("variants after delete: %v", wide.GetVariantAgents())
	}
	if _, err := st.Variant("berlin", "ag-0000000000000001"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("pc-1 keeps a variant: %v", err)
	}

	// Compliance follows the policy: every item it asks, reported or not,
	// counted over the hosts it asks it of.
	st.UpdateMember("ag-0000000000000002", func(m *store.Member) {
		m.Report = &store.Report{Revision: p.Revision, At: time.Now(), Items: []store.ItemStatus{{ID: "package/tools", Kind: "package", Status: "compliant"}}}
	})
	code, out = call(t, srv, "GET", "/v1/offices/berlin/compliance", "", token)
	got := map[string]string{}
	for _, it := range out["items"].([]any) {
		it := it.(map[string]any)
		got[it["id"].(string)] = fmt.Sprintf("hosts %v, compliant %v, not reported %v", it["hosts"], it["counts"].(map[string]any)["compliant"], it["not_reported_by"])
	}
	if want := map[string]string{"package/hello": "hosts 2, compliant <nil>, not reported 2", "package/tools": "hosts 1, compliant 1, not reported 0"}; code != 200 || !reflect.DeepEqual(got, want) {
		t.Fatalf("compliance: %d %v, want %v", code, got, want)
	}
}

func TestConflictsAreRefusedWhenApplied(t *testing.T) {
	srv, st, _ := newAPI(t)
	call(t, srv, "POST", "/v1/offices", `{"name":"berlin"}`, token)
	v1 := uploadBytes(t, srv, "hello-1.tar.gz", "hello one")
	v2 := uploadBytes(t, srv, "hello-2.tar.gz", "hello two")
	enrolAgent(t, st, "berlin", "ag-0000000000000001", "pc-1")
	enrolAgent(t, st, "berlin", "ag-0000000000000002", "pc-2")
	call(t, srv, "PATCH", "/v1/agents/pc-1/labels", `{"set":{"kiosk":"","lab":""}}`, token)
	if code, out := call(t, srv, "PUT", "/v1/offices/berlin/policy", pkgYAML("", "hello", "1", v1), token); code != 200 {
		t.Fatalf("office policy: %d %v", code, out)
	}
	if code, out := call(t, srv, "PUT", "/v1/policies/kiosks", pkgYAML("targets: {labels: [kiosk]}\n", "hello", "1", v1), token); code != 201 {
		t.Fatalf("kiosks: %d %v", code, out)
	}
	before, _ := st.Policy("berlin")
	tests := []struct {
		name, method, path, body string
		errHas                   []string
		computers                []any
	}{
		{
			name: "two label policies on one computer", method: "PUT", path: "/v1/policies/lab",
			body:      pkgYAML("targets: {labels: [lab]}\n", "hello", "2", v2),
			errHas:    []string{`policies "kiosks" and "lab" set package/hello differently`, "label level with priority 0", "on pc-1", "was not applied"},
			computers: []any{"pc-1"},
		},
		{
			name: "a named policy against the office's own", method: "PUT", path: "/v1/policies/berlin-hello",
			body:      pkgYAML("targets: {offices: [berlin]}\n", "hello", "2", v2),
			errHas:    []string{`policies "berlin-hello" and "office:berlin"`, "office level", "in office berlin, on pc-1, pc-2"},
			computers: []any{"pc-1", "pc-2"},
		},
		{
			name: "two agent policies naming one computer differently", method: "PUT", path: "/v1/policies/pc-2-b",
			body:   pkgYAML("targets: {agents: [pc-2, pc-9]}\n", "hello", "2", v2),
			errHas: []string{},
		},
		{
			name: "and the second one", method: "PUT", path: "/v1/policies/pc-2-c",
			body:      pkgYAML("targets: {agents: [ag-0000000000000002, pc-9]}\n", "hello", "1", v1),
			errHas:    []string{`policies "pc-2-b" and "pc-2-c" set package/hello differently`, "agent level", "pc-2", "pc-9"},
			computers: []any{"pc-2", "pc-9"},
		},
		{
			name: "a named office policy that agrees with the office's own", method: "PUT", path: "/v1/policies/berlin-same",
			body:   pkgYAML("targets: {offices: [berlin]}\n", "hello", "1", v1),
			errHas: []string{},
		},
		{
			name: "the office's own policy against a named office one", method: "PUT", path: "/v1/offices/berlin/policy",
			body:      pkgYAML("", "hello", "2", v2),
			errHas:    []string{`policies "berlin-same" and "office:berlin"`, "the policy of office berlin was not applied"},
			computers: []any{"pc-1", "pc-2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out := call(t, srv, tc.method, tc.path, tc.body, token)
			if len(tc.errHas) == 0 {
				if code >= 300 {
					t.Fatalf("%d %v, want success", code, out)
				}
				return
			}
			if code != http.StatusConflict {
				t.Fatalf("%d %v, want 409", code, out)
			}
			msg := out["error"].(string)
			for _, s := range tc.errHas {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q does not say %q", msg, s)
				}
			}
			cs := out["conflicts"].([]any)
			if len(cs) != 1 || !reflect.DeepEqual(cs[0].(map[string]any)["computers"], tc.computers) {
				t.Errorf("conflicts %v, want computers %v", cs, tc.computers)
			}
		})
	}
	// Nothing refused was saved.
	for _, name := range []string{"lab", "berlin-hello", "pc-2-c"} {
		if _, err := st.NamedPolicy(name); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("refused policy %s was stored: %v", name, err)
		}
	}
	// A higher priority settles it.
	if code, out := call(t, srv, "PUT", "/v1/policies/lab", pkgYAML("targets: {labels: [lab]}\npriority: 1\n", "hello", "2", v2), token); code != 201 {
		t.Fatalf("lab with priority 1: %d %v", code, out)
	}
	// A label that would make two policies of one priority meet is refused.
	call(t, srv, "PUT", "/v1/policies/blue", pkgYAML("targets: {labels: [blue]}\npriority: 1\n", "hello", "1", v1), token)
	code, out := call(t, srv, "PATCH", "/v1/agents/pc-1/labels", `{"set":{"blue":""}}`, token)
	if code != 409 || !strings.Contains(out["error"].(string), `policies "blue" and "lab"`) || !strings.Contains(out["error"].(string), "the labels of pc-1") {
		t.Fatalf("label bringing blue and lab together: %d %v", code, out)
	}
	if m, _ := st.Member("ag-0000000000000001"); m.Labels["blue"] == "x" || len(m.Labels) != 2 {
		t.Fatalf("refused labels were stored: %v", m.Labels)
	}
	if after, _ := st.Policy("berlin"); after.YAML != before.YAML {
		t.Fatalf("the refused office policy was stored: %q", after.YAML)
	}
}

func TestNamedPolicyInputErrors(t *testing.T) {
	srv, _, _ := newAPI(t)
	call(t, srv, "POST", "/v1/offices", `{"name":"berlin"}`, token)
	for _, tc := range []struct {
		name, path, body string
		code             int
		errHas           string
	}{
		{"bad name", "/v1/policies/Kiosk%20Policy", "targets: {labels: [a]}\nitems: []\n", 400, "policy name"},
		{"no targets", "/v1/policies/k", "items: []\n", 400, "no targets"},
		{"unknown office", "/v1/policies/k", "targets: {offices: [paris]}\nitems: []\n", 404, "office paris (targeted by policy k) does not exist"},
		{"unknown agent id", "/v1/policies/k", "targets: {agents: [ag-00000000000000ff]}\nitems: []\n", 404, "agent ag-00000000000000ff (targeted by policy k) is not enrolled"},
		{"a hostname not enrolled yet is fine", "/v1/policies/k", "targets: {agents: [pc-99]}\nitems: []\n", 201, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := call(t, srv, "PUT", tc.path, tc.body, token)
			if code != tc.code || (tc.errHas != "" && !strings.Contains(out["error"].(string), tc.errHas)) {
				t.Fatalf("%d %v, want %d mentioning %q", code, out, tc.code, tc.errHas)
			}
		})
	}
	for body, errHas := range map[string]string{
		`{"set":{"a=b":""}}`:   "has a '='",
		`{"set":{"Kiosk":""}}`: `label "Kiosk"`,
		`{"set":{"k":"a b"}}`:  `label "k=a b"`,
		`{"set":{"k":1}}`:      "not valid JSON",
		`{"add":{"k":""}}`:     "not valid JSON",
	} {
		if code, out := call(t, srv, "PATCH", "/v1/agents/nobody/labels", body, token); code != 400 || !strings.Contains(out["error"].(string), errHas) {
			t.Errorf("labels %s: %d %v, want 400 mentioning %q", body, code, out, errHas)
		}
	}
	if code, out := call(t, srv, "PATCH", "/v1/agents/nobody/labels", `{"set":{"a":""}}`, token); code != 404 {
		t.Fatalf("labels of nobody: %d %v", code, out)
	}
	if code, out := call(t, srv, "DELETE", "/v1/policies/nothing", "", token); code != 404 {
		t.Fatalf("delete nothing: %d %v", code, out)
	}
}

// An agent that enrols, or is moved, where a policy names it gets its own
// variant in a new revision of its office, before it is told the revision.
func TestPlacedAgentGetsItsVariant(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	_, priv, _ := ed25519.GenerateKey(nil)
	reg := prometheus.NewRegistry()
	a, err := New(Deps{Store: st, Files: &hashingUploader{}, Notifier: &notes{}, Signer: testSigner{priv}, Gatherer: reg, Logger: logging.Discard(), AdminToken: token}, reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	call(t, srv, "POST", "/v1/offices", `{"name":"berlin"}`, token)
	call(t, srv, "POST", "/v1/offices", `{"name":"paris"}`, token)
	v1 := uploadBytes(t, srv, "hello-1.tar.gz", "hello one")
	call(t, srv, "PUT", "/v1/offices/berlin/policy", "items: []\n", token)
	// Named by hostname before it enrols.
	if code, out := call(t, srv, "PUT", "/v1/policies/laptop", pkgYAML("targets: {agents: [laptop-7]}\n", "hello", "1", v1), token); code != 201 {
		t.Fatalf("policy: %d %v", code, out)
	} else if out["published"] != nil {
		t.Fatalf("published for a computer that is not there: %v", out)
	}
	const id = "ag-0000000000000007"
	enrolAgent(t, st, "berlin", id, "laptop-7")
	before, _ := st.Policy("berlin")
	a.MemberPlaced(id)
	after, _ := st.Policy("berlin")
	if after.Revision != before.Revision+1 {
		t.Fatalf("revision %d → %d, want a new one", before.Revision, after.Revision)
	}
	if v, err := st.Variant("berlin", id); err != nil || v.Revision != after.Revision {
		t.Fatalf("variant after enrolment: %+v %v", v, err)
	}
	// Told again, nothing changes: the office's revision already serves it.
	a.MemberPlaced(id)
	if again, _ := st.Policy("berlin"); again.Revision != after.Revision {
		t.Fatalf("a second placement issued revision %d", again.Revision)
	}
	// Moved to paris (no policy of its own there yet): paris gets a
	// revision with its variant.
	if code, out := call(t, srv, "POST", "/v1/agents/"+id+"/move", `{"office":"paris"}`, token); code != 200 {
		t.Fatalf("move: %d %v", code, out)
	}
	p, err := st.Policy("paris")
	if err != nil {
		t.Fatal(err)
	}
	v, err := st.Variant("paris", id)
	if err != nil || v.Revision != p.Revision || !reflect.DeepEqual(versions(signedPolicy(t, v.Signed)), map[string]string{"package/hello": "1"}) {
		t.Fatalf("variant in paris: %+v %v", v, err)
	}
	if wide := signedPolicy(t, p.Signed); len(wide.GetItems()) != 0 || !reflect.DeepEqual(wide.GetVariantAgents(), []string{id}) {
		t.Fatalf("paris office-wide: %v", wide)
	}
}

// An agent may be named by id, by hostname in any case, or by the start of
// its id, wherever the API takes one.
func TestAgentNamedByHostnameOrIDStart(t *testing.T) {
	srv, st, _ := newAPI(t)
	call(t, srv, "POST", "/v1/offices", `{"name":"berlin"}`, token)
	call(t, srv, "POST", "/v1/offices", `{"name":"paris"}`, token)
	enrolAgent(t, st, "berlin", "ag-3f9c2a0011223344", "PC-17")
	enrolAgent(t, st, "berlin", "ag-3f9c2b5566778899", "pc-18")
	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/v1/agents/ag-3f9c2a0011223344", 200, "ag-3f9c2a0011223344"},
		{"/v1/agents/pc-17", 200, "ag-3f9c2a0011223344"},
		{"/v1/agents/ag-3f9c2b", 200, "ag-3f9c2b5566778899"},
		{"/v1/agents/ag-3f9c2", 409, "2 agents have an id starting with ag-3f9c2"},
		{"/v1/agents/ag-3f", 404, "no agent has the id or hostname"}, // too short to be taken as a start
		{"/v1/agents/pc-19", 404, "no agent has the id or hostname"},
		{"/v1/agents/PC-18/runs", 200, "ag-3f9c2b5566778899"},
	} {
		code, out := call(t, srv, "GET", c.path, "", token)
		if code != c.code || !strings.Contains(fmt.Sprint(out), c.want) {
			t.Errorf("GET %s: %d %v, want %d with %q", c.path, code, out, c.code, c.want)
		}
	}
	code, out := call(t, srv, "POST", "/v1/agents/pc-18/move", `{"office":"paris"}`, token)
	if code != 200 || out["id"] != "ag-3f9c2b5566778899" || out["office"] != "paris" {
		t.Fatalf("move by hostname: %d %v", code, out)
	}
}

// An office's first revision: when its first agent is placed, at start for
// one that has agents already, never for a distribution office.
func TestFirstRevision(t *testing.T) {
	srv, st, _ := newAPI(t)
	a := srv.Config.Handler.(*API)
	call(t, srv, "POST", "/v1/offices", `{"name":"berlin"}`, token)
	call(t, srv, "POST", "/v1/offices", `{"name":"paris"}`, token)
	call(t, srv, "POST", "/v1/offices", `{"name":"empty"}`, token)
	if code, out := call(t, srv, "POST", "/v1/offices", `{"name":"lyon","mode":"distribution","distribution_server":"10.4.0.5:8090"}`, token); code != 201 {
		t.Fatalf("distribution office: %d %v", code, out)
	}
	enrolAgent(t, st, "berlin", "ag-0000000000000001", "pc-1")
	enrolAgent(t, st, "paris", "ag-0000000000000002", "pc-2")
	enrolAgent(t, st, "lyon", "ag-0000000000000003", "pc-3")
	a.MemberPlaced("ag-0000000000000001")
	a.MemberPlaced("ag-0000000000000003")
	if p, err := st.Policy("berlin"); err != nil || p.Revision != 1 {
		t.Fatalf("berlin, its first agent placed: %+v %v", p, err)
	}
	a.MemberPlaced("ag-0000000000000001") // again: nothing new
	if err := a.PublishFirstRevisions(); err != nil {
		t.Fatal(err)
	}
	for office, want := range map[string]uint64{"berlin": 1, "paris": 1, "empty": 0, "lyon": 0} {
		var got uint64
		if p, err := st.Policy(office); err == nil {
			got = p.Revision
		} else if !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s is at revision %d, want %d", office, got, want)
		}
	}
}
