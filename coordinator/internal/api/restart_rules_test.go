package api

import (
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/patches"
	"github.com/outposthq/outpost/coordinator/internal/store"
)

// the hourly approval-rule run (EvaluateRules) records the
// rule's approvals (patches.Evaluate, one bbolt transaction each) and only
// then republishes the offices that gained one. A kill between the two
// leaves the approval stored and the office's signed policy without the
// patch. After the restart, EvaluateRules republishes only offices that
// gain an approval *now*; the one already stored is never "added" again,
// so the office is never republished for it: `outpost patch approvals`
// says approved, the agents keep the patch report-only, until some
// unrelated change republishes the office.
// Reconcile, at start and hourly, signs what was stored and never signed.
func TestRuleApprovalStoredBeforeAKillIsSignedAtStart(t *testing.T) {
	srv, st, _ := newAPI(t)
	if code, out := call(t, srv, "POST", "/v1/offices", `{"name":"lab"}`, token); code != 201 {
		t.Fatalf("office: %d %v", code, out)
	}
	sha := upload(t, srv.URL, "hello-2.0.0.tar.gz", "fixed package bytes")
	feed := "patches:\n  - {id: OUT-1, title: fix, severity: high, package: hello, fixed_version: 2.0.0, artifact: " + sha + "}\n"
	if code, out := call(t, srv, "POST", "/v1/patches/import", feed, token); code != 200 {
		t.Fatalf("import: %d %v", code, out)
	}
	if _, _, err := st.PutRule(store.ApprovalRule{Name: "high", MinSeverity: "high", TestOffice: "lab", Created: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}

	// EvaluateRules' first durable step (the approvals), then the kill.
	now := time.Now().UTC()
	added, err := patches.Evaluate(st, now)
	if err != nil || len(added) != 1 {
		t.Fatalf("evaluate: %v %v", added, err)
	}

	// Restart: the coordinator evaluates the rules at once (RunRules).
	_, a := restarted(t, st)
	if _, err := a.EvaluateRules(now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}

	aps, _ := st.Approvals("lab")
	items := signedItems(t, st, "lab")
	for _, it := range items {
		if it.GetId() == "patch/OUT-1" && !it.GetReportOnly() {
			return
		}
	}
	t.Fatalf("OUT-1 is approved for lab (%d approvals stored) but lab's signed policy still has it report-only or not at all: %v", len(aps), items)
}
