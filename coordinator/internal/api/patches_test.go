package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

func upload(t *testing.T, srvURL, name, body string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", srvURL+"/v1/artifacts?name="+name, bytes.NewReader([]byte(body)))
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

func signedItems(t *testing.T, st *store.Store, office string) []*wire.Item {
	t.Helper()
	p, err := st.Policy(office)
	if err != nil {
		t.Fatal(err)
	}
	var sp wire.SignedPolicy
	var pol wire.Policy
	if err := proto.Unmarshal(p.Signed, &sp); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(sp.GetPolicy(), &pol); err != nil {
		t.Fatal(err)
	}
	return pol.GetItems()
}

func TestPatchCatalogApprovalAndCompliance(t *testing.T) {
	srv, st, _ := newAPI(t)
	for _, o := range []string{"berlin", "lab"} {
		if code, out := call(t, srv, "POST", "/v1/offices", `{"name":"`+o+`","time_zone":"Europe/Berlin"}`, token); code != 201 {
			t.Fatalf("office: %d %v", code, out)
		}
	}
	sha := upload(t, srv.URL, "hello-2.0.0.tar.gz", "fixed package bytes")
	never := strings.Repeat("cd", 32)
	entry := func(id, sup, art string) string {
		return fmt.Sprintf("  - {id: %s, title: fix, severity: high, package: hello, fixed_version: 2.0.0, artifact: %s, supersedes: [%s], rollback_allowed: true}\n", id, art, sup)
	}

	// Bad feeds: clear errors, nothing imported.
	for name, tc := range map[string]struct{ feed, errHas string }{
		"malformed":         {"patches: [\n", "the feed is malformed"},
		"supersedes itself": {"patches:\n" + entry("OUT-1", "OUT-1", sha), "patch OUT-1: supersedes itself"},
		"unknown artifact":  {"patches:\n" + entry("OUT-1", "", never), "was never uploaded"},
		"cycle":             {"patches:\n" + entry("OUT-1", "OUT-2", sha) + entry("OUT-2", "OUT-1", sha), "supersedes forms a cycle"},
	} {
		t.Run(name, func(t *testing.T) {
			code, out := call(t, srv, "POST", "/v1/patches/import", tc.feed, token)
			if code != 400 || !strings.Contains(out["error"].(string), tc.errHas) || !strings.Contains(out["error"].(string), "not imported") {
				t.Fatalf("import: %d %v; want 400 with %q", code, out, tc.errHas)
			}
		})
	}
	if ps, _ := st.Patches(); len(ps) != 0 {
		t.Fatalf("refused feeds left %d patches", len(ps))
	}

	code, out := call(t, srv, "POST", "/v1/patches/import", "patches:\n"+entry("OUT-1", "", sha)+entry("OUT-2", "OUT-1", sha), token)
	if code != 200 || out["added"].(float64) != 2 {
		t.Fatalf("import: %d %v", code, out)
	}
	code, out = call(t, srv, "GET", "/v1/patches", "", token)
	if code != 200 || len(out["patches"].([]any)) != 2 {
		t.Fatalf("list: %d %v", code, out)
	}
	// Before any approval every office scans for the newest patch (OUT-2
	// supersedes OUT-1), report-only, without its artifact.
	if items := signedItems(t, st, "berlin"); len(items) != 1 || items[0].GetId() != "patch/OUT-2" || !items[0].GetReportOnly() || items[0].GetArtifact() != nil {
		t.Fatalf("berlin before approval = %v", items)
	}

	// The admin's policy, then an explicit approval of both: the signed
	// policy gets OUT-2 only (it supersedes OUT-1), with the window.
	call(t, srv, "PUT", "/v1/offices/berlin/policy", "items:\n  - kind: registry\n    path: /etc/app.conf\n    name: a\n    value: b\n", token)
	for _, id := range []string{"OUT-1", "OUT-2"} {
		code, out = call(t, srv, "POST", "/v1/patches/"+id+"/approve", `{"office":"berlin","window":"22:00-04:00","reboot":"if-needed-inside-window"}`, token)
		if code != 200 {
			t.Fatalf("approve %s: %d %v", id, code, out)
		}
	}
	items := signedItems(t, st, "berlin")
	if len(items) != 2 || items[0].GetKind() != "registry" || items[1].GetId() != "patch/OUT-2" || items[1].GetWindow() != "22:00-04:00" || items[1].GetReportOnly() ||
		items[1].GetArtifact().GetSha256() != sha || items[1].GetPatch().GetFixedVersion() != "2.0.0" {
		t.Fatalf("signed items = %v", items)
	}
	// Re-applying the admin's policy keeps the approved patches.
	call(t, srv, "PUT", "/v1/offices/berlin/policy", "items: []\n", token)
	if items := signedItems(t, st, "berlin"); len(items) != 1 || items[0].GetId() != "patch/OUT-2" {
		t.Fatalf("after policy apply = %v", items)
	}
	// An approval without its own window takes the office policy's defaults.
	call(t, srv, "PUT", "/v1/offices/berlin/policy", "defaults:\n  window: 01:00-03:00\n  reboot: notify-only\nitems: []\n", token)
	call(t, srv, "POST", "/v1/offices", `{"name":"paris","time_zone":"Europe/Paris"}`, token)
	if code, out = call(t, srv, "POST", "/v1/patches/OUT-2/approve", `{"office":"paris"}`, token); code != 200 {
		t.Fatalf("approve in paris: %d %v", code, out)
	}
	if items := signedItems(t, st, "berlin"); len(items) != 1 || items[0].GetWindow() != "22:00-04:00" || items[0].GetReboot() != "if-needed-inside-window" {
		t.Fatalf("an approval's own window must win over the defaults: %v", items)
	}
	call(t, srv, "PUT", "/v1/offices/paris/policy", "defaults:\n  window: 01:00-03:00\n  reboot: notify-only\nitems: []\n", token)
	if items := signedItems(t, st, "paris"); len(items) != 1 || items[0].GetId() != "patch/OUT-2" || items[0].GetWindow() != "01:00-03:00" || items[0].GetReboot() != "notify-only" {
		t.Fatalf("an approval without a window must take the office's defaults: %v", items)
	}
	for name, tc := range map[string]struct{ path, body, errHas string }{
		"unknown patch":  {"/v1/patches/NOPE/approve", `{"office":"berlin"}`, "patch NOPE"},
		"unknown office": {"/v1/patches/OUT-1/approve", `{"office":"rome"}`, "office rome"},
		"bad window":     {"/v1/patches/OUT-1/approve", `{"office":"berlin","window":"late"}`, "HH:MM-HH:MM"},
		"no office":      {"/v1/patches/OUT-1/approve", `{}`, "no office given"},
	} {
		t.Run(name, func(t *testing.T) {
			code, out := call(t, srv, "POST", tc.path, tc.body, token)
			if code < 400 || !strings.Contains(out["error"].(string), tc.errHas) {
				t.Fatalf("%d %v; want an error with %q", code, out, tc.errHas)
			}
		})
	}

	// Hosts report; missing patches by host and office, runs kept.
	mk := func(id, office, status, msg string, at time.Time) {
		t.Helper()
		if _, err := st.Member(id); err != nil {
			st.CreateToken(store.Token{ID: "t" + id, Hash: "h" + id, Office: office, Role: "agent", Expires: time.Now().Add(time.Hour), Uses: 1})
			if _, _, err := st.Enroll("h"+id, time.Now(), func(store.Token, store.Office) (store.Member, error) {
				return store.Member{ID: id, Hostname: "host-" + id, Office: office, Home: office, Role: "agent"}, nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		p, err := st.Policy(office)
		if err != nil {
			t.Fatal(err)
		}
		st.UpdateMember(id, func(m *store.Member) { // a report of the office's current revision
			m.Report = &store.Report{Revision: p.Revision, At: at, Items: []store.ItemStatus{{ID: "patch/OUT-2", Kind: "patch", Status: status, Message: msg}}}
		})
	}
	t0 := time.Now().UTC().Truncate(time.Second)
	mk("a1", "berlin", "pending", "waiting for window 22:00-04:00 Europe/Berlin", t0)
	mk("a1", "berlin", "pending", "waiting for window 22:00-04:00 Europe/Berlin", t0) // the same report again
	mk("a1", "berlin", "failed", "apply: disk full", t0.Add(time.Minute))
	mk("a2", "berlin", "compliant", "installed", t0)
	code, out = call(t, srv, "GET", "/v1/patches-missing?office=berlin", "", token)
	if code != 200 {
		t.Fatalf("missing: %d %v", code, out)
	}
	hosts := out["hosts"].([]any)
	if len(hosts) != 2 || len(hosts[0].(map[string]any)["missing"].([]any)) != 1 || len(hosts[1].(map[string]any)["missing"].([]any)) != 0 {
		t.Fatalf("missing by host = %v", hosts)
	}
	offices := out["offices"].([]any)
	if offices[0].(map[string]any)["missing"].(map[string]any)["OUT-2"].(float64) != 1 {
		t.Fatalf("missing by office = %v", offices)
	}
	// A report of an earlier revision does not say the patch is in: a2's
	// "compliant" is pending once berlin is at a newer revision.
	st.UpdateMember("a2", func(m *store.Member) { m.Report.Revision-- })
	code, out = call(t, srv, "GET", "/v1/patches-missing?office=berlin", "", token)
	if hosts := out["hosts"].([]any); code != 200 || len(hosts[1].(map[string]any)["missing"].([]any)) != 1 ||
		!strings.Contains(fmt.Sprint(hosts[1]), "not reported on revision") {
		t.Fatalf("a stale report: %d %v", code, out)
	}
	st.UpdateMember("a2", func(m *store.Member) { m.Report.Revision++ })
	code, out = call(t, srv, "GET", "/v1/agents/a1/runs", "", token)
	if runs := out["runs"].([]any); code != 200 || len(runs) != 2 || runs[0].(map[string]any)["items"].([]any)[0].(map[string]any)["status"] != "failed" {
		t.Fatalf("runs: %d %v; want 2, newest first", code, out)
	}
	code, out = call(t, srv, "GET", "/v1/offices/berlin/compliance", "", token)
	it := out["items"].([]any)[0].(map[string]any)
	if code != 200 || it["counts"].(map[string]any)["failed"].(float64) != 1 || it["counts"].(map[string]any)["compliant"].(float64) != 1 ||
		!strings.Contains(fmt.Sprint(it["failed"]), "disk full") {
		t.Fatalf("compliance: %d %v", code, out)
	}

	// Rules: severity high approves in the lab at once.
	code, out = call(t, srv, "PUT", "/v1/patch-rules/high-first", `{"min_severity":"high","test_office":"lab","after_days":5}`, token)
	if code != 201 || len(out["approved"].([]any)) != 2 {
		t.Fatalf("rule: %d %v; want it evaluated on save, approving 2", code, out)
	}
	if items := signedItems(t, st, "lab"); len(items) != 1 || items[0].GetId() != "patch/OUT-2" {
		t.Fatalf("lab items once the rule is saved = %v", items)
	}
	created := out["created"]
	// Replaced whole, created when it was first put.
	code, out = call(t, srv, "PUT", "/v1/patch-rules/high-first", `{"min_severity":"high","test_office":"lab","after_days":2}`, token)
	if code != 200 || out["created"] != created || out["after_days"].(float64) != 2 {
		t.Fatalf("rule edited: %d %v (created first %v)", code, out, created)
	}
	if code, out := call(t, srv, "GET", "/v1/patch-rules/high-first", "", token); code != 200 || out["created"] != created || out["after_days"].(float64) != 2 {
		t.Fatalf("rule shown: %d %v", code, out)
	}
	if code, out := call(t, srv, "GET", "/v1/patch-rules/nothing", "", token); code != 404 || !strings.Contains(fmt.Sprint(out), "rule nothing") {
		t.Fatalf("missing rule shown: %d %v", code, out)
	}
	code, out = call(t, srv, "POST", "/v1/patch-rules/evaluate", "", token)
	if code != 200 || len(out["approved"].([]any)) != 0 {
		t.Fatalf("evaluate: %d %v; want nothing new, the rule approved when saved", code, out)
	}
	if code, out := call(t, srv, "PUT", "/v1/patch-rules/x", `{"min_severity":"urgent","test_office":"lab"}`, token); code != 400 {
		t.Fatalf("bad rule: %d %v", code, out)
	}
}

func TestComplianceCollector(t *testing.T) {
	srv, st, _ := newAPI(t)
	if err := st.CreateOffice(store.Office{Name: "berlin", Mode: "direct", CheckinInterval: time.Minute, TimeZone: "UTC"}); err != nil {
		t.Fatal(err)
	}
	if code, out := call(t, srv, "PUT", "/v1/offices/berlin/policy", "items: []\n", token); code != 200 {
		t.Fatalf("policy: %d %v", code, out)
	}
	p, _ := st.Policy("berlin")
	st.CreateToken(store.Token{ID: "t1", Hash: "h1", Office: "berlin", Role: "agent", Expires: time.Now().Add(time.Hour), Uses: 1})
	st.CreateToken(store.Token{ID: "t2", Hash: "h2", Office: "berlin", Role: "agent", Expires: time.Now().Add(time.Hour), Uses: 1})
	if _, _, err := st.Enroll("h2", time.Now(), func(store.Token, store.Office) (store.Member, error) {
		return store.Member{ID: "a2", Hostname: "pc-2", Office: "berlin", Home: "berlin", Role: "agent"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	// pc-2 last reported on an earlier revision: its word is not about
	// the current one, so its items count as pending.
	st.UpdateMember("a2", func(m *store.Member) {
		m.Report = &store.Report{Revision: p.Revision - 1, At: time.Now(), Items: []store.ItemStatus{
			{ID: "patch/OUT-1", Status: "compliant"}, {ID: "registry:/etc/x#a", Status: "compliant"}}}
	})
	if _, _, err := st.Enroll("h1", time.Now(), func(store.Token, store.Office) (store.Member, error) {
		return store.Member{ID: "a1", Hostname: "pc-1", Office: "berlin", Home: "berlin", Role: "agent"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	st.UpdateMember("a1", func(m *store.Member) {
		m.Report = &store.Report{Revision: p.Revision, At: time.Now(), Items: []store.ItemStatus{
			{ID: "patch/OUT-1", Status: "failed"}, {ID: "registry:/etc/x#a", Status: "compliant"}, {ID: "patch/OUT-2", Status: "compliant"}}}
	})
	reg := prometheus.NewRegistry()
	a := &API{d: Deps{Store: st}, log: logging.Discard()}
	reg.MustRegister(a.ComplianceCollector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetValue()
			}
			got[key] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"outpost_coordinator_items,berlin,failed":    1,
		"outpost_coordinator_items,berlin,compliant": 2,
		"outpost_coordinator_items,berlin,pending":   2,
		"outpost_coordinator_patches_missing,berlin": 2,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}
