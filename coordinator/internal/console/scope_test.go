package console

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// enrolAgent puts an agent straight into the store, as an enrolment would.
func (e *env) enrolAgent(office, id, hostname string) {
	e.t.Helper()
	tok := store.Token{ID: "t-" + id, Hash: "h-" + id, Office: office, Role: "agent", Uses: 1, Expires: time.Now().Add(time.Hour)}
	if err := e.st.CreateToken(tok); err != nil {
		e.t.Fatal(err)
	}
	_, _, err := e.st.Enroll(tok.Hash, time.Now(), func(store.Token, store.Office) (store.Member, error) {
		return store.Member{ID: id, Hostname: hostname, Office: office, Home: office, Role: "agent"}, nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// upload stores an artifact through the API and returns its hash.
func (e *env) upload(name, body string) string {
	e.t.Helper()
	var art artifact
	if code := e.apiDo("POST", "/v1/artifacts?name="+name, body, &art); code != http.StatusCreated {
		e.t.Fatalf("upload %s: %d", name, code)
	}
	return art.SHA256
}

func pkgItems(name, version, sha string) string {
	return "items:\n  - kind: package\n    name: " + name + "\n    version: \"" + version + "\"\n    artifact: " + sha + "\n"
}

// scopeEnv is an office hq with one enrolled agent pc-1 and two artifacts.
type scopeEnv struct {
	*env
	b      *browser
	v1, v2 string
}

const agentID = "ag-0123456789abcdef"

func newScopeEnv(t *testing.T) *scopeEnv {
	e := newEnv(t)
	if code := e.apiDo("POST", "/v1/offices", map[string]any{"name": "hq"}, nil); code != http.StatusCreated {
		t.Fatalf("office: %d", code)
	}
	e.apiDo("POST", "/v1/offices", map[string]any{"name": "lab"}, nil)
	e.enrolAgent("hq", agentID, "pc-1")
	return &scopeEnv{env: e, b: e.signIn("", adminToken), v1: e.upload("hello-1.tar.gz", "version one"), v2: e.upload("hello-2.tar.gz", "version two")}
}

func (e *scopeEnv) policy(name string) (*namedPolicy, int) {
	e.t.Helper()
	var p namedPolicy
	code := e.apiDo("GET", "/v1/policies/"+url.PathEscape(name), nil, &p)
	return &p, code
}

func (e *scopeEnv) labels() map[string]string {
	e.t.Helper()
	var a agent
	if code := e.apiDo("GET", "/v1/agents/"+agentID, nil, &a); code != 200 {
		e.t.Fatalf("agent: %d", code)
	}
	return a.Labels
}

func TestNamedPolicyCreateEditDelete(t *testing.T) {
	e := newScopeEnv(t)
	form := url.Values{"name": {"kiosks"}, "offices": {"lab"}, "agents": {"pc-17"}, "labels": {"kiosk, floor=3"}, "priority": {"10"},
		"yaml": {"# kiosks run hello\r\n" + pkgItems("hello", "1.0.0", e.v1)}}
	res, body := e.b.post("/ui/policies", form)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/policies/kiosks" {
		t.Fatalf("create: %d\n%s", res.StatusCode, body)
	}
	p, code := e.policy("kiosks")
	if code != 200 || p.Priority != 10 || strings.Join(p.Targets.Offices, ",") != "lab" || strings.Join(p.Targets.Agents, ",") != "pc-17" ||
		strings.Join(p.Targets.Labels, ",") != "kiosk,floor=3" || !strings.Contains(p.YAML, "# kiosks run hello") {
		t.Fatalf("stored: %d %+v", code, p)
	}
	_, body = e.b.get("/ui/policies/kiosks")
	for _, want := range []string{"Policy kiosks created", `value="lab" checked`, "floor=3", `value="10"`, "# kiosks run hello\nitems:"} {
		if !strings.Contains(body, want) {
			t.Fatalf("the policy page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "targets:") {
		t.Fatalf("the editor shows the targets, which have their own fields:\n%s", body)
	}
	_, body = e.b.get("/ui/policies")
	if !strings.Contains(body, `href="/ui/policies/kiosks"`) || !strings.Contains(body, "pc-17") || !strings.Contains(body, `href="/ui/offices/hq/policy"`) {
		t.Fatalf("policies page:\n%s", body)
	}

	// Edit: what the page shows, saved again with one change, keeps the rest.
	form = url.Values{"offices": {"lab", "hq"}, "agents": {"pc-17"}, "labels": {"kiosk\nfloor=3"}, "priority": {"-5"},
		"yaml": {"# kiosks run hello\n" + pkgItems("hello", "1.0.0", e.v1)}}
	if res, body := e.b.post("/ui/policies/kiosks", form); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("edit: %d\n%s", res.StatusCode, body)
	}
	if p, _ = e.policy("kiosks"); p.Priority != -5 || len(p.Targets.Offices) != 2 || strings.Join(p.Computers, ",") != "pc-1" {
		t.Fatalf("edited: %+v", p)
	}
	if _, body := e.b.get("/ui/policies/kiosks"); !strings.Contains(body, "signed hq revision") {
		t.Fatalf("no revision in the message:\n%s", body)
	}

	if res, _ := e.b.post("/ui/policies/kiosks/delete", url.Values{}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete: %d", res.StatusCode)
	}
	if _, code := e.policy("kiosks"); code != 404 {
		t.Fatalf("after delete: %d", code)
	}
	if res, _ := e.b.get("/ui/policies/kiosks"); res.StatusCode != 404 {
		t.Fatalf("page of a removed policy: %d", res.StatusCode)
	}
}

func TestNamedPolicyBadInputBesideField(t *testing.T) {
	e := newScopeEnv(t)
	if code := e.apiDo("PUT", "/v1/policies/kiosks", "targets: {labels: [kiosk]}\npriority: 3\n"+pkgItems("hello", "1.0.0", e.v1), nil); code != 201 {
		t.Fatalf("kiosks: %d", code)
	}
	good := func(kv ...string) url.Values {
		v := url.Values{"name": {"desks"}, "labels": {"desk"}, "priority": {"0"}, "yaml": {pkgItems("hello", "1.0.0", e.v1)}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	cases := []struct {
		name, path string
		form       url.Values
		field      string // the id the error must be beside
		want       string
		kept       string
	}{
		{"name", "/ui/policies", good("name", "Desks!"), "name", "policy name", `value="Desks!"`},
		{"no name", "/ui/policies", good("name", " "), "name", "Give the policy a name", "desk"},
		{"name taken", "/ui/policies", good("name", "kiosks"), "name", "already exists", `value="kiosks"`},
		{"priority not a number", "/ui/policies", good("priority", "high"), "priority", "whole number", `value="high"`},
		{"priority out of range", "/ui/policies", good("priority", "5000"), "priority", "priority must be", `value="5000"`},
		{"no targets", "/ui/policies", good("labels", ""), "targets", "no office, agent or label", "hello"},
		{"bad label", "/ui/policies", good("labels", "desk Floor!"), "t-labels", "Floor!", "Floor!"},
		{"bad agent", "/ui/policies", good("agents", "pc 17?"), "t-agents", "neither a member id nor a hostname", "17?"},
		{"unknown office", "/ui/policies", good("offices", "atlantis"), "t-offices", "does not exist", `value="atlantis" checked`},
		{"agent not enrolled", "/ui/policies", good("agents", "ag-00000000000000ff"), "t-agents", "not enrolled", "ag-00000000000000ff"},
		{"yaml line", "/ui/policies", good("yaml", "items:\n  - kind: package\n    name: hello\n    colour: blue\n"), "line-4", "line 4", "colour: blue"},
		{"targets in yaml", "/ui/policies", good("yaml", "targets: {offices: [hq]}\n"+pkgItems("hello", "1.0.0", e.v1)), "yaml", "fields above", "targets: {offices: [hq]}"},
		{"edit yaml line", "/ui/policies/kiosks", good("yaml", pkgItems("hello", "1.0.0", strings.Repeat("ab", 32))), "line-5", "line 5", strings.Repeat("ab", 32)},
		{"edit priority", "/ui/policies/kiosks", good("priority", "1001"), "priority", "priority must be", `value="1001"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.b.refused(t, tc.path, tc.form, tc.field, tc.want, tc.kept)
			var all struct{ Policies []namedPolicy }
			e.apiDo("GET", "/v1/policies", nil, &all)
			if len(all.Policies) != 1 || all.Policies[0].Priority != 3 || strings.Join(all.Policies[0].Targets.Labels, ",") != "kiosk" {
				t.Fatalf("something was saved: %+v", all.Policies)
			}
		})
	}
}

func TestConflictsRefusedAndShown(t *testing.T) {
	e := newScopeEnv(t)
	if code := e.apiDo("PATCH", "/v1/agents/"+agentID+"/labels", map[string]any{"set": map[string]string{"kiosk": ""}}, nil); code != 200 {
		t.Fatalf("label: %d", code)
	}
	if code := e.apiDo("PUT", "/v1/policies/kiosks", "targets: {labels: [kiosk]}\n"+pkgItems("hello", "1.0.0", e.v1), nil); code != 201 {
		t.Fatalf("kiosks: %d", code)
	}
	wantConflict := func(t *testing.T, body string, policies ...string) {
		t.Helper()
		i := strings.Index(body, `id="conflicts"`)
		if i < 0 {
			t.Fatalf("no conflicts shown:\n%s", body)
		}
		table := body[i:]
		table = table[:strings.Index(table, "</table>")]
		for _, want := range append(policies, "package/hello", "pc-1") {
			if !strings.Contains(table, want) {
				t.Fatalf("the conflict does not name %q:\n%s", want, table)
			}
		}
		if !strings.Contains(body, `id="top-error"`) && !strings.Contains(body, `id="labels-top"`) {
			t.Fatalf("the API's message is not at the top:\n%s", body)
		}
	}

	// A named policy that would set hello differently on pc-1.
	yaml := pkgItems("hello", "2.0.0", e.v2)
	res, body := e.b.post("/ui/policies", url.Values{"name": {"kiosks-new"}, "labels": {"kiosk"}, "yaml": {yaml}})
	if res.StatusCode != http.StatusConflict {
		t.Fatalf("status %d\n%s", res.StatusCode, body)
	}
	wantConflict(t, body, "kiosks", "kiosks-new")
	if !strings.Contains(body, "kiosks-new") || !strings.Contains(body, e.v2) || !strings.Contains(body, `value="kiosk"`) && !strings.Contains(body, ">kiosk</textarea>") {
		t.Fatalf("the form lost the input:\n%s", body)
	}
	if strings.Contains(body, `id="policy-problems"`) {
		t.Fatal("a conflict is shown as a problem of the YAML")
	}
	if _, code := e.policy("kiosks-new"); code != 404 {
		t.Fatalf("the conflicting policy was saved: %d", code)
	}

	// A label that would bring pc-1 under a policy that conflicts.
	if code := e.apiDo("PUT", "/v1/policies/lab-hello", "targets: {labels: [lab]}\n"+yaml, nil); code != 201 {
		t.Fatalf("lab-hello: %d", code)
	}
	res, body = e.b.post("/ui/agents/"+agentID+"/labels", url.Values{"labels": {"lab floor=2"}})
	if res.StatusCode != http.StatusConflict {
		t.Fatalf("label status %d\n%s", res.StatusCode, body)
	}
	wantConflict(t, body, "kiosks", "lab-hello")
	if !strings.Contains(body, `value="lab floor=2"`) {
		t.Fatal("the labels form lost the input")
	}
	if l := e.labels(); len(l) != 1 {
		t.Fatalf("labels saved: %v", l)
	}

	// The office's own policy against an office-level named policy.
	if code := e.apiDo("PUT", "/v1/policies/hq-hello", "targets: {offices: [hq]}\n"+yaml, nil); code != 201 {
		t.Fatalf("hq-hello: %d", code)
	}
	res, body = e.b.post("/ui/offices/hq/policy", url.Values{"yaml": {pkgItems("hello", "1.0.0", e.v1)}})
	if res.StatusCode != http.StatusConflict {
		t.Fatalf("office policy status %d\n%s", res.StatusCode, body)
	}
	wantConflict(t, body, "hq-hello", "office:hq")
	if strings.Contains(body, `id="policy-problems"`) {
		t.Fatal("a conflict is shown as a problem of the YAML")
	}
	var own policyInfo
	if e.apiDo("GET", "/v1/offices/hq/policy", nil, &own); strings.Contains(own.YAML, e.v1) {
		t.Fatalf("the office's policy was applied: %q", own.YAML)
	}
}

func TestAgentLabelsAndEffectivePolicy(t *testing.T) {
	e := newScopeEnv(t)
	page := "/ui/agents/" + agentID
	labels := page + "/labels"
	res, body := e.b.post(labels, url.Values{"labels": {"kiosk floor=3, desk"}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("add: %d\n%s", res.StatusCode, body)
	}
	if l := e.labels(); len(l) != 3 || l["floor"] != "3" || l["kiosk"] != "" {
		t.Fatalf("labels %v", l)
	}
	for _, tc := range []struct {
		name, labels, want string
	}{
		{"bad key", "Kiosk!", "the key"},
		{"bad value", "floor=3!", "the value"},
		{"nothing", "  ", "Type a label"},
		{"no key", "=3", "the key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := e.b.post(labels, url.Values{"labels": {tc.labels}})
			if res.StatusCode < 400 || res.StatusCode >= 500 || !errorBeside(body, "add-labels", tc.want) {
				t.Fatalf("%d, no %q beside the field:\n%s", res.StatusCode, tc.want, body)
			}
			if !strings.Contains(body, `value="`+tc.labels+`"`) {
				t.Fatal("the form lost the input")
			}
			if l := e.labels(); len(l) != 3 || l["floor"] != "3" {
				t.Fatalf("labels changed: %v", l)
			}
		})
	}
	// Removed by its button, and with key- as in the CLI.
	if res, _ := e.b.post(labels, url.Values{"remove": {"floor"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatal(res.StatusCode)
	}
	if res, _ := e.b.post(labels, url.Values{"labels": {"desk-"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatal(res.StatusCode)
	}
	if l := e.labels(); len(l) != 1 || l["kiosk"] != "" {
		t.Fatalf("labels after removing: %v", l)
	}

	// The effective policy: the label policy's hello over the office's.
	if code := e.apiDo("PUT", "/v1/offices/hq/policy", pkgItems("hello", "1.0.0", e.v1)+"  - kind: package\n    name: tools\n    version: \"1\"\n    artifact: "+e.v1+"\n", nil); code != 200 {
		t.Fatalf("office policy: %d", code)
	}
	if code := e.apiDo("PUT", "/v1/policies/kiosks", "targets: {labels: [kiosk]}\npriority: 7\n"+pkgItems("hello", "2.0.0", e.v2), nil); code != 201 {
		t.Fatalf("kiosks: %d", code)
	}
	_, body = e.b.get(page)
	row := func(item string) string {
		i := strings.Index(body, `data-item="`+item+`"`)
		if i < 0 {
			t.Fatalf("no row for %s:\n%s", item, body)
		}
		return body[i : i+strings.Index(body[i:], "</tr>")]
	}
	if r := row("package/hello"); !strings.Contains(r, `href="/ui/policies/kiosks"`) || !strings.Contains(r, "label</span> 7") || !strings.Contains(r, `href="/ui/offices/hq/policy">office:hq`) {
		t.Fatalf("hello's row: %s", r)
	}
	if r := row("package/tools"); !strings.Contains(r, ">office:hq</a>") || !strings.Contains(r, "office</span> 0") {
		t.Fatalf("tools' row: %s", r)
	}
	if !strings.Contains(body, "its own variant") || !strings.Contains(body, `id="agent-reach"`) {
		t.Fatalf("variant or reach missing:\n%s", body)
	}

	// The agents list shows labels and filters by them.
	_, body = e.b.get("/ui/agents")
	if !strings.Contains(body, `<a class="badge label" href="/ui/agents?label=kiosk">kiosk</a>`) {
		t.Fatalf("agents list without labels:\n%s", body)
	}
	for q, want := range map[string]bool{"label=kiosk": true, "label=kiosk&office=hq": true, "label=kiosk&office=lab": false, "label=desk": false, "label=kiosk%3Dyes": false} {
		_, body = e.b.get("/ui/agents?" + q)
		if got := strings.Contains(body, `data-agent="pc-1"`); got != want {
			t.Errorf("%s: pc-1 shown %v, want %v", q, got, want)
		}
	}
}

// The new forms are CSRF-protected like every other: nothing is changed
// by a post without the session's token or from another origin.
func TestScopeFormsRefuseCSRF(t *testing.T) {
	e := newScopeEnv(t)
	if code := e.apiDo("PUT", "/v1/policies/kiosks", "targets: {labels: [kiosk]}\n"+pkgItems("hello", "1.0.0", e.v1), nil); code != 201 {
		t.Fatalf("kiosks: %d", code)
	}
	forms := []struct {
		path string
		form url.Values
	}{
		{"/ui/policies", url.Values{"name": {"desks"}, "labels": {"desk"}, "yaml": {"items: []\n"}}},
		{"/ui/policies/kiosks", url.Values{"labels": {"desk"}, "priority": {"9"}, "yaml": {"items: []\n"}}},
		{"/ui/policies/kiosks/delete", url.Values{}},
		{"/ui/agents/" + agentID + "/labels", url.Values{"labels": {"kiosk"}}},
		{"/ui/agents/" + agentID + "/labels", url.Values{"remove": {"kiosk"}}},
	}
	unchanged := func() bool {
		var all struct{ Policies []namedPolicy }
		e.apiDo("GET", "/v1/policies", nil, &all)
		return len(all.Policies) == 1 && all.Policies[0].Priority == 0 && all.Policies[0].Targets.Labels[0] == "kiosk" && len(e.labels()) == 0
	}
	for _, f := range forms {
		for _, attack := range []string{"no token", "wrong token", "other origin"} {
			t.Run(f.path+" "+attack, func(t *testing.T) {
				v := url.Values{}
				for k, x := range f.form {
					v[k] = x
				}
				if attack != "no token" {
					v.Set("csrf", e.b.csrf)
				}
				if attack == "wrong token" {
					v.Set("csrf", "x"+e.b.csrf)
				}
				req := httptest.NewRequest("POST", f.path, strings.NewReader(v.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Origin", "http://"+host)
				if attack == "other origin" {
					req.Header.Set("Origin", "http://evil.example")
				}
				if res, _ := e.b.do(req); res.StatusCode != http.StatusForbidden {
					t.Fatalf("status %d, want 403", res.StatusCode)
				}
				if !unchanged() {
					t.Fatal("the forged post changed something")
				}
			})
		}
	}
	// A read-only user sees the policy without its form; a post made by
	// hand is refused by the API, whose message shows at the top.
	e.addUser("rita", "read only pw", "read-only")
	r := e.signIn("rita", "read only pw")
	if res, body := r.get("/ui/policies/kiosks"); res.StatusCode != 200 || !strings.Contains(body, `id="policy-view"`) || strings.Contains(body, `id="policy-form"`) {
		t.Fatalf("read-only policy page: %d\n%s", res.StatusCode, body)
	}
	res, body := r.post("/ui/policies/kiosks", url.Values{"labels": {"desk"}, "yaml": {"items: []\n"}})
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, `id="top-error"`) || !unchanged() {
		t.Fatalf("read-only edit: %d\n%s", res.StatusCode, body)
	}
}

func TestPolicyBody(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"block", "# kiosks\ntargets:\n  labels: [kiosk]\n  offices:\n    - hq\n\n# the items\npriority: 4\nitems:\n  - kind: package\n",
			"# kiosks\n\n# the items\nitems:\n  - kind: package\n"},
		{"targets last", "items: []\ndefaults: {reboot: never}\ntargets: {agents: [pc-1]}\n", "items: []\ndefaults: {reboot: never}\n"},
		{"flow", "{targets: {labels: [a]}, priority: 1, items: []}\n", "items: []\n"},
		{"not yaml", "targets: [\n", "targets: [\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := policyBody(tc.src); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
