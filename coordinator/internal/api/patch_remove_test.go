package api

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// A patch leaves the catalog only when no policy names it (each later
// revision of that policy could not be made without it) and, unless the
// approvals are asked to go with it, when no office approves it. Then every
// office is signed again without it, and its artifact, which nothing else
// names, can be removed in turn.
func TestPatchIsRemovedFromTheCatalogOnlyWhenNothingNeedsIt(t *testing.T) {
	srv, st, _ := newAPI(t)
	for _, o := range []string{"berlin", "paris"} {
		if code, out := call(t, srv, "POST", "/v1/offices", `{"name":"`+o+`"}`, token); code != 201 {
			t.Fatalf("office %s: %d %v", o, code, out)
		}
	}
	old := upload(t, srv.URL, "hello-1.1.0.tar.gz", "hello 1.1.0")
	fixed := upload(t, srv.URL, "hello-2.0.0.tar.gz", "hello 2.0.0")
	named := upload(t, srv.URL, "curl-8.0.tar.gz", "curl 8.0")
	feed := "patches:\n" +
		"  - {id: OUT-0, title: old fix, severity: high, package: hello, fixed_version: 1.1.0, artifact: " + old + "}\n" +
		"  - {id: OUT-1, title: hello fix, severity: high, package: hello, fixed_version: 2.0.0, artifact: " + fixed + ", supersedes: [OUT-0]}\n" +
		"  - {id: OUT-2, title: curl fix, severity: low, package: curl, fixed_version: \"8.0\", artifact: " + named + "}\n"
	steps := []struct{ method, path, body string }{
		{"POST", "/v1/patches/import", feed},
		{"PUT", "/v1/offices/paris/policy", "items:\n  - kind: patch\n    id: OUT-2\n"},
		{"POST", "/v1/patches/OUT-1/approve", `{"office":"berlin"}`},
		{"POST", "/v1/patches/OUT-1/approve", `{"office":"paris"}`},
	}
	for _, s := range steps {
		if code, out := call(t, srv, s.method, s.path, s.body, token); code/100 != 2 {
			t.Fatalf("%s %s: %d %v", s.method, s.path, code, out)
		}
	}

	refusals := []struct{ path, want string }{
		{"/v1/patches/OUT-2", "patch OUT-2 is named by the policy of office paris; take it out of it first"},
		{"/v1/patches/OUT-1", "patch OUT-1 is approved for office berlin, paris; revoke the approvals first"},
		{"/v1/patches/OUT-1?revoke=false", "is approved for office berlin, paris"},
	}
	for _, r := range refusals {
		code, out := call(t, srv, "DELETE", r.path, "", token)
		if code != 409 || !strings.Contains(fmt.Sprint(out["error"]), r.want) {
			t.Errorf("DELETE %s: %d %v; want 409 saying %q", r.path, code, out, r.want)
		}
	}
	for _, id := range []string{"OUT-1", "OUT-2"} {
		if _, err := st.Patch(id); err != nil {
			t.Errorf("a refused removal took %s: %v", id, err)
		}
	}
	if aps, _ := st.Approvals(""); len(aps) != 2 {
		t.Errorf("a refused removal took approvals: %v", aps)
	}
	if code, out := call(t, srv, "DELETE", "/v1/patches/OUT-9", "", token); code != 404 || !strings.Contains(fmt.Sprint(out["error"]), "no patch OUT-9 in the catalog") {
		t.Errorf("unknown patch: %d %v", code, out)
	}
	if code, out := call(t, srv, "DELETE", "/v1/patches/OUT-1?revoke=perhaps", "", token); code != 400 || !strings.Contains(fmt.Sprint(out["error"]), `revoke="perhaps": use true or false`) {
		t.Errorf("a revoke that is not a boolean: %d %v", code, out)
	}

	before, err := st.Policy("berlin")
	if err != nil {
		t.Fatal(err)
	}
	if !signedHasItem(t, before.Signed, "patch/OUT-1") {
		t.Fatal("berlin's policy lacks the approved patch before the removal")
	}
	code, out := call(t, srv, "DELETE", "/v1/patches/OUT-1?revoke=true", "", token)
	if code != 200 {
		t.Fatalf("remove with its approvals: %d %v", code, out)
	}
	if fmt.Sprint(out["revoked"]) != "[berlin paris]" || fmt.Sprint(out["superseded"]) != "[OUT-0]" || out["artifact"] != fixed {
		t.Errorf("answer %v: want berlin and paris revoked, OUT-0 superseded, its artifact", out)
	}
	if _, err := st.Patch("OUT-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("OUT-1 is still in the catalog: %v", err)
	}
	if aps, _ := st.Approvals(""); len(aps) != 0 {
		t.Errorf("approvals left: %v", aps)
	}
	after, err := st.Policy("berlin")
	if err != nil {
		t.Fatal(err)
	}
	if after.Revision <= before.Revision || signedHasItem(t, after.Signed, "patch/OUT-1") {
		t.Errorf("berlin: revision %d → %d, still names patch/OUT-1: %v", before.Revision, after.Revision, signedHasItem(t, after.Signed, "patch/OUT-1"))
	}
	// OUT-0 is no longer superseded: berlin's agents scan for it again.
	if !signedHasItem(t, after.Signed, "patch/OUT-0") {
		t.Error("berlin's policy does not scan for OUT-0 once what superseded it is gone")
	}
	if code, out := call(t, srv, "DELETE", "/v1/patches/OUT-1", "", token); code != 404 {
		t.Errorf("removing it again: %d %v", code, out)
	}
	// Nothing names its artifact any more.
	if code, out := call(t, srv, "DELETE", "/v1/artifacts/"+fixed, "", token); code != 200 {
		t.Errorf("remove the removed patch's artifact: %d %v", code, out)
	}

	// Once paris's policy no longer names OUT-2, it goes too.
	if code, out := call(t, srv, "PUT", "/v1/offices/paris/policy", "items: []\n", token); code != 200 {
		t.Fatalf("paris without OUT-2: %d %v", code, out)
	}
	if code, out := call(t, srv, "DELETE", "/v1/patches/OUT-2", "", token); code != 200 || fmt.Sprint(out["revoked"]) != "[]" {
		t.Errorf("remove OUT-2: %d %v", code, out)
	}
	ps, err := st.Patches()
	if err != nil || len(ps) != 1 || ps[0].ID != "OUT-0" {
		t.Errorf("catalog after the removals: %v %v; want OUT-0 alone", ps, err)
	}
}

func signedHasItem(t *testing.T, signed []byte, id string) bool {
	t.Helper()
	for _, it := range signedPolicy(t, signed).GetItems() {
		if it.GetId() == id {
			return true
		}
	}
	return false
}
