package api

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// An agent reports every item of its policy, and the coordinator refuses a
// check-in whose report has more than wire.MaxCheckinReportItems (10,000).
// A policy at the limit plus approved patches went out to its agents all
// the same, and they could never check in again. Now the approval that
// would take the office past the limit is refused and not kept (the office
// keeps its policy), and patches merely scanned for take only the room
// left.
func TestAnApprovalThatTakesAPolicyPastWhatAgentsMayReportIsRefused(t *testing.T) {
	srv, st, _ := newAPI(t)
	if code, out := call(t, srv, "POST", "/v1/offices", `{"name":"berlin"}`, token); code != 201 {
		t.Fatalf("office: %d %v", code, out)
	}
	var yaml strings.Builder
	yaml.WriteString("items:\n")
	for i := range 10000 {
		fmt.Fprintf(&yaml, "  - {kind: registry, path: /etc/app.conf, name: k%d, value: v}\n", i)
	}
	if code, out := call(t, srv, "PUT", "/v1/offices/berlin/policy", yaml.String(), token); code != 200 {
		t.Fatalf("policy of 10,000 items: %d %v", code, out)
	}
	sha := upload(t, srv.URL, "hello-2.0.0.tar.gz", "fixed package bytes")
	feed := fmt.Sprintf("patches:\n  - {id: OUT-1, title: fix, severity: high, package: hello, fixed_version: 2.0.0, artifact: %s}\n", sha)
	if code, out := call(t, srv, "POST", "/v1/patches/import", feed, token); code != 200 {
		t.Fatalf("import: %d %v", code, out)
	}
	if n := len(signedItems(t, st, "berlin")); n != 10000 {
		t.Fatalf("a policy at the limit signed with %d items: the patch scanned for must take no room that is not left", n)
	}
	code, out := call(t, srv, "POST", "/v1/patches/OUT-1/approve", `{"office":"berlin"}`, token)
	if code != 422 || !strings.Contains(fmt.Sprint(out["error"]), "10001 items") || !strings.Contains(fmt.Sprint(out["error"]), "10000") {
		t.Fatalf("approve past the limit: %d %v; want 422 saying the policy would have 10001 items", code, out)
	}
	if aps, _ := st.Approvals("berlin"); len(aps) != 0 {
		t.Fatalf("the refused approval was kept: %v (every later publication of the office would fail)", aps)
	}
	if n := len(signedItems(t, st, "berlin")); n != 10000 {
		t.Fatalf("the office's policy has %d items", n)
	}
	if code, out := call(t, srv, "PUT", "/v1/offices/berlin/policy", "items: []\n", token); code != 200 {
		t.Fatalf("the office's policy cannot be changed after a refused approval: %d %v", code, out)
	}
}

// A signed policy travels in one message: one larger than a message may
// carry is refused when it is made, naming whose it is, not sent to fail
// at every agent.
func TestASignedPolicyLargerThanAMessageIsRefused(t *testing.T) {
	if err := checkPolicySize("berlin", "", make([]byte, maxSignedPolicy)); err != nil {
		t.Fatalf("a policy at the bound: %v", err)
	}
	err := checkPolicySize("berlin", "ag-1", make([]byte, maxSignedPolicy+1))
	if !errors.Is(err, errPolicyTooLarge) || !strings.Contains(err.Error(), "ag-1 in office berlin") {
		t.Fatalf("a policy over the bound: %v", err)
	}
}
