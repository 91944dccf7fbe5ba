package api

import (
	"testing"
)

// DELETE /v1/patches/{id}/approve (revokePatch, patches.go) deletes
// the approval in one bbolt transaction (store.Revoke) and only then signs
// the office's new revision without the patch (republish). A kill between
// the two leaves the approval gone and the signed policy still telling
// every agent of the office to install the patch (the admin is revoking
// it because it is bad). The retry answers 404 ("approval ... not found")
// and republishes nothing; `outpost patch approvals` shows it revoked;
// nothing at start republished (the crash review). Agents go on installing the revoked patch
// until some unrelated change republishes the office.
// Reconcile, at start and hourly, signs what was stored and never signed.
func TestPatchRevokedBeforeAKillLeavesTheSignedPolicyAtStart(t *testing.T) {
	srv, st, _ := newAPI(t)
	if code, out := call(t, srv, "POST", "/v1/offices", `{"name":"berlin"}`, token); code != 201 {
		t.Fatalf("office: %d %v", code, out)
	}
	sha := upload(t, srv.URL, "hello-2.0.0.tar.gz", "fixed package bytes")
	feed := "patches:\n  - {id: OUT-1, title: fix, severity: high, package: hello, fixed_version: 2.0.0, artifact: " + sha + "}\n"
	if code, out := call(t, srv, "POST", "/v1/patches/import", feed, token); code != 200 {
		t.Fatalf("import: %d %v", code, out)
	}
	if code, out := call(t, srv, "POST", "/v1/patches/OUT-1/approve", `{"office":"berlin"}`, token); code != 200 {
		t.Fatalf("approve: %d %v", code, out)
	}

	// revokePatch's first durable step, then the kill.
	if err := st.Revoke("berlin", "OUT-1"); err != nil {
		t.Fatal(err)
	}

	// Restart; the admin, who got no answer, revokes again.
	srv2, _ := restarted(t, st)
	code, out := call(t, srv2, "DELETE", "/v1/patches/OUT-1/approve?office=berlin", "", token)

	for _, it := range signedItems(t, st, "berlin") {
		if it.GetId() == "patch/OUT-1" && !it.GetReportOnly() {
			t.Fatalf("OUT-1 is revoked for berlin but berlin's signed policy still has agents install it (%v); the retried revoke answered %d %v",
				it.GetArtifact().GetSha256()[:12], code, out)
		}
	}
}
