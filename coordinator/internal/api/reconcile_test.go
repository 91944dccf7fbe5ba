package api

import (
	"testing"
)

// Reconcile signs nothing for offices whose revision is current, however
// much is set (named policies, variants by label, approvals, grants):
// otherwise every start and every hour would make every agent run again.
func TestReconcileLeavesCurrentRevisionsAlone(t *testing.T) {
	x := newAuthAPI(t)
	mustCall := func(method, path, body string) {
		t.Helper()
		if code, out := call(t, x.srv, method, path, body, token); code/100 != 2 {
			t.Fatalf("%s %s: %d %v", method, path, code, out)
		}
	}
	for _, o := range []string{"hq", "lab"} {
		mustCall("POST", "/v1/offices", `{"name":"`+o+`"}`)
	}
	enrolAgent(t, x.st, "hq", "ag-0000000000000001", "pc-1")
	enrolAgent(t, x.st, "hq", "ag-0000000000000002", "kiosk-1")
	v1 := upload(t, x.srv.URL, "hello-1.tar.gz", "one")
	v2 := upload(t, x.srv.URL, "hello-2.tar.gz", "two")
	mustCall("PUT", "/v1/offices/hq/policy", pkgYAML("", "hello", "1", v1))
	mustCall("PUT", "/v1/offices/lab/policy", "items: []\n")
	mustCall("PATCH", "/v1/agents/ag-0000000000000002/labels", `{"set":{"kiosk":""}}`)
	mustCall("PUT", "/v1/policies/kiosks", pkgYAML("targets: {labels: [kiosk]}\n", "hello", "2", v2))
	mustCall("POST", "/v1/patches/import", "patches:\n  - {id: OUT-1, title: fix, severity: high, package: hello, fixed_version: 2.0.0, artifact: "+v2+"}\n")
	mustCall("POST", "/v1/patches/OUT-1/approve", `{"office":"lab"}`)
	mustCall("POST", "/v1/users", `{"name":"tina","password":"tina-password-1"}`)
	mustCall("PUT", "/v1/offices/hq/permissions", `{"grants":[{"subject":"user:tina","rights":["view"]}]}`)
	mustCall("PUT", "/v1/hosts/pc-1/permissions", `{"grants":[{"subject":"user:tina","rights":["command"]}]}`)

	revs := func() map[string]uint64 {
		out := map[string]uint64{}
		for _, o := range []string{"hq", "lab"} {
			p, err := x.st.Policy(o)
			if err != nil {
				t.Fatal(err)
			}
			out[o] = p.Revision
		}
		return out
	}
	before := revs()
	for range 2 {
		published, err := x.api.Reconcile()
		if err != nil || len(published) != 0 {
			t.Fatalf("Reconcile on current revisions published %v (%v)", published, err)
		}
	}
	if after := revs(); after["hq"] != before["hq"] || after["lab"] != before["lab"] {
		t.Fatalf("revisions moved: %v → %v", before, after)
	}
}
