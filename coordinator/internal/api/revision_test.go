package api

import (
	"reflect"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// An agent whose last report is of an earlier revision (its disk was full,
// it kept reporting its previous run) has not run the office's current
// policy: its items are pending for this revision, never compliant, in the
// office's compliance as in the agent's own view.
func TestComplianceCountsOnlyReportsOfTheCurrentRevision(t *testing.T) {
	srv, st, _ := newAPI(t)
	call(t, srv, "POST", "/v1/offices", `{"name":"lab"}`, token)
	big6 := uploadBytes(t, srv, "big-6.0.tar.gz", "big six")
	big1 := uploadBytes(t, srv, "big-1.0.tar.gz", "big one")
	for _, id := range []string{"ag-00000000000000a1", "ag-00000000000000a2", "ag-00000000000000a3"} {
		enrolAgent(t, st, "lab", id, "pc-"+id[len(id)-2:])
	}
	if code, out := call(t, srv, "PUT", "/v1/offices/lab/policy", pkgYAML("", "big", "6.0", big6), token); code != 200 {
		t.Fatalf("apply big 6.0: %d %v", code, out)
	}
	code, out := call(t, srv, "PUT", "/v1/offices/lab/policy", pkgYAML("", "big", "1.0", big1), token)
	if code != 200 {
		t.Fatalf("apply big 1.0: %d %v", code, out)
	}
	rev := uint64(out["revision"].(float64))
	if rev < 2 {
		t.Fatalf("the second apply is revision %d", rev)
	}
	report := func(id string, revision uint64, status, msg string) {
		t.Helper()
		if _, err := st.UpdateMember(id, func(m *store.Member) {
			m.Revision = revision
			m.Report = &store.Report{Revision: revision, At: time.Now(), Items: []store.ItemStatus{{ID: "package/big", Kind: "package", Status: status, Message: msg}}}
		}); err != nil {
			t.Fatal(err)
		}
	}
	report("ag-00000000000000a1", rev-1, "compliant", "big 6.0 is installed") // the previous run, reported again
	report("ag-00000000000000a2", rev, "compliant", "big 1.0 is installed")
	report("ag-00000000000000a3", rev, "failed", "disk full")

	code, out = call(t, srv, "GET", "/v1/offices/lab/compliance", "", token)
	if code != 200 {
		t.Fatalf("compliance: %d %v", code, out)
	}
	items := out["items"].([]any)
	if len(items) != 1 {
		t.Fatalf("items: %v", items)
	}
	it := items[0].(map[string]any)
	want := map[string]any{"compliant": 1.0, "pending": 1.0, "failed": 1.0}
	if it["id"] != "package/big" || !reflect.DeepEqual(it["counts"], want) || it["outdated"] != 1.0 || it["not_reported_by"] != 0.0 || it["hosts"] != 3.0 {
		t.Fatalf("package/big: %v; want counts %v, 1 outdated (a report of revision %d is not one of revision %d)", it, want, rev-1, rev)
	}
	if out["revision"] != float64(rev) || out["hosts"] != 3.0 || out["outdated"] != 1.0 {
		t.Fatalf("compliance: %v; want revision %d, 3 hosts, 1 outdated", out, rev)
	}

	// The agent's own view says the same.
	for id, compliant := range map[string]bool{"ag-00000000000000a1": false, "ag-00000000000000a2": true, "ag-00000000000000a3": false} {
		code, out := call(t, srv, "GET", "/v1/agents/"+id, "", token)
		if code != 200 || out["compliant"] != compliant {
			t.Fatalf("agent %s: %d %v; want compliant %v", id, code, out, compliant)
		}
	}

	// Once it reports on the current revision, it counts as it reports.
	report("ag-00000000000000a1", rev, "compliant", "big 1.0 is installed")
	_, out = call(t, srv, "GET", "/v1/offices/lab/compliance", "", token)
	it = out["items"].([]any)[0].(map[string]any)
	if want := (map[string]any{"compliant": 2.0, "failed": 1.0}); !reflect.DeepEqual(it["counts"], want) || it["outdated"] != 0.0 || out["outdated"] != 0.0 {
		t.Fatalf("after a report of revision %d: %v; want counts %v", rev, out, want)
	}
}

// Applying what the office's current revision carries signs nothing new:
// an admin's retry must not have every agent run again.
func TestApplyingTheSamePolicyKeepsTheRevision(t *testing.T) {
	srv, st, n := newAPI(t)
	call(t, srv, "POST", "/v1/offices", `{"name":"x"}`, token)
	v1 := uploadBytes(t, srv, "hello-1.tar.gz", "hello one")
	v2 := uploadBytes(t, srv, "hello-2.tar.gz", "hello two")
	apply := func(query, yaml string, wantRev uint64, wantUnchanged bool) map[string]any {
		t.Helper()
		code, out := call(t, srv, "PUT", "/v1/offices/x/policy"+query, yaml, token)
		if code != 200 || out["revision"] != float64(wantRev) || (out["unchanged"] == true) != wantUnchanged {
			t.Fatalf("apply %q: %d %v; want revision %d, unchanged %v", yaml, code, out, wantRev, wantUnchanged)
		}
		return out
	}
	pol := pkgYAML("", "hello", "1", v1)
	apply("", pol, 1, false)
	first, _ := st.Policy("x")
	apply("", pol, 1, true)
	if again, _ := st.Policy("x"); string(again.Signed) != string(first.Signed) || !again.Applied.Equal(first.Applied) {
		t.Fatal("an unchanged apply replaced the signed policy")
	}
	if !reflect.DeepEqual(n.revs, []uint64{1}) {
		t.Fatalf("agents were told of %v, want [1] only", n.revs)
	}
	// Another text for the same policy: the text is kept, the revision too.
	commented := "# the same, commented\n" + pol
	out := apply("", commented, 1, true)
	if out["yaml"] != commented || len(out["items"].([]any)) != 1 {
		t.Fatalf("unchanged apply answered %v", out)
	}
	if p, _ := st.Policy("x"); p.YAML != commented || p.Revision != 1 || string(p.Signed) != string(first.Signed) {
		t.Fatalf("stored after a commented apply: revision %d yaml %q", p.Revision, p.YAML)
	}
	// A change is a new revision; so is anything asked with force.
	apply("", pkgYAML("", "hello", "2", v2), 2, false)
	apply("", pkgYAML("", "hello", "2", v2), 2, true)
	apply("?force=true", pkgYAML("", "hello", "2", v2), 3, false)
	// What else the revision carries counts too: defaults that change the
	// window of every item.
	apply("", "defaults:\n  window: 22:00-04:00\n"+pkgYAML("", "hello", "2", v2), 4, false)
	if !reflect.DeepEqual(n.revs, []uint64{1, 2, 3, 4}) {
		t.Fatalf("agents were told of %v, want [1 2 3 4]", n.revs)
	}
	if code, out := call(t, srv, "PUT", "/v1/offices/x/policy?force=maybe", pol, token); code != 400 {
		t.Fatalf("force=maybe: %d %v", code, out)
	}
}

// Variants are part of what a revision carries: the same office policy
// re-applied while a label policy gives one agent its own is unchanged,
// and a change that only a variant shows is a new revision.
func TestApplyingTheSamePolicyWithVariants(t *testing.T) {
	srv, st, n := newAPI(t)
	call(t, srv, "POST", "/v1/offices", `{"name":"berlin"}`, token)
	v1 := uploadBytes(t, srv, "hello-1.tar.gz", "hello one")
	v2 := uploadBytes(t, srv, "hello-2.tar.gz", "hello two")
	tools := uploadBytes(t, srv, "tools.tar.gz", "tools")
	enrolAgent(t, st, "berlin", "ag-0000000000000001", "pc-1")
	enrolAgent(t, st, "berlin", "ag-0000000000000002", "pc-2")
	office := pkgYAML("", "hello", "1", v1)
	if code, out := call(t, srv, "PUT", "/v1/offices/berlin/policy", office, token); code != 200 {
		t.Fatalf("office policy: %d %v", code, out)
	}
	if code, out := call(t, srv, "PATCH", "/v1/agents/pc-1/labels", `{"set":{"kiosk":""}}`, token); code != 200 {
		t.Fatalf("label: %d %v", code, out)
	}
	if code, out := call(t, srv, "PUT", "/v1/policies/kiosks", pkgYAML("targets:\n  labels: [kiosk]\n", "hello", "2", v2), token); code != 200 && code != 201 {
		t.Fatalf("named policy: %d %v", code, out)
	}
	p, _ := st.Policy("berlin")
	if vs, _ := st.VariantMembers("berlin"); !reflect.DeepEqual(vs, []string{"ag-0000000000000001"}) {
		t.Fatalf("variants: %v", vs)
	}
	told := len(n.revs)
	code, out := call(t, srv, "PUT", "/v1/offices/berlin/policy", office, token)
	if code != 200 || out["unchanged"] != true || out["revision"] != float64(p.Revision) ||
		!reflect.DeepEqual(out["variants"], []any{"ag-0000000000000001"}) || len(n.revs) != told {
		t.Fatalf("re-apply with variants: %d %v (told %v); want revision %d unchanged", code, out, n.revs, p.Revision)
	}
	// An item the kiosk's variant also gets changes it too: a new revision.
	code, out = call(t, srv, "PUT", "/v1/offices/berlin/policy", office+"  - kind: package\n    name: tools\n    version: \"1\"\n    artifact: "+tools+"\n", token)
	if code != 200 || out["unchanged"] == true || out["revision"] != float64(p.Revision+1) {
		t.Fatalf("changed apply: %d %v; want revision %d", code, out, p.Revision+1)
	}
	v, err := st.Variant("berlin", "ag-0000000000000001")
	if err != nil || v.Revision != p.Revision+1 || versions(signedPolicy(t, v.Signed))["package/tools"] != "1" {
		t.Fatalf("variant after the change: %+v %v", v, err)
	}
}

// A named policy applied again as it was re-runs no agent either: the
// offices it reaches keep their revision and the answer says so.
func TestApplyingTheSameNamedPolicyKeepsTheRevisions(t *testing.T) {
	srv, st, n := newAPI(t)
	call(t, srv, "POST", "/v1/offices", `{"name":"berlin"}`, token)
	v2 := uploadBytes(t, srv, "hello-2.tar.gz", "hello two")
	enrolAgent(t, st, "berlin", "ag-0000000000000001", "pc-1")
	named := pkgYAML("targets:\n  offices: [berlin]\n", "hello", "2", v2)
	code, out := call(t, srv, "PUT", "/v1/policies/fleet", named, token)
	if code != 201 {
		t.Fatalf("named policy: %d %v", code, out)
	}
	p, _ := st.Policy("berlin")
	told := len(n.revs)
	code, out = call(t, srv, "PUT", "/v1/policies/fleet", named, token)
	if code != 200 || out["published"] != nil || !reflect.DeepEqual(out["unchanged"], map[string]any{"berlin": float64(p.Revision)}) || len(n.revs) != told {
		t.Fatalf("the same named policy again: %d %v (told %v); want berlin unchanged at %d", code, out, n.revs, p.Revision)
	}
	if q, _ := st.Policy("berlin"); q.Revision != p.Revision {
		t.Fatalf("berlin went to revision %d", q.Revision)
	}
	// A change is published.
	code, out = call(t, srv, "PUT", "/v1/policies/fleet", pkgYAML("targets:\n  offices: [berlin]\n", "hello", "3", v2), token)
	if code != 200 || !reflect.DeepEqual(out["published"], map[string]any{"berlin": float64(p.Revision + 1)}) {
		t.Fatalf("a changed named policy: %d %v", code, out)
	}
	// force: a new revision all the same, for a rollout on purpose.
	code, out = call(t, srv, "PUT", "/v1/policies/fleet?force=true", pkgYAML("targets:\n  offices: [berlin]\n", "hello", "3", v2), token)
	if code != 200 || !reflect.DeepEqual(out["published"], map[string]any{"berlin": float64(p.Revision + 2)}) {
		t.Fatalf("the same named policy, forced: %d %v", code, out)
	}
}
