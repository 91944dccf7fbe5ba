package api

import (
	"testing"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// PATCH /v1/agents/{id}/labels (setLabels, scope.go) stores the
// new labels in one bbolt transaction and publishes the office's new
// revision (the agent's variant) in a second. A kill between the two
// leaves the label stored and the agent on the office-wide policy. The
// admin's retry with the same labels compares the stored labels (already
// new) with the asked ones, finds no change and publishes nothing; nothing
// at start does either. The kiosk keeps running the office-wide policy
// (hello 1, not the kiosk policy's hello 2) until some other change
// republishes the office.
// Reconcile, at start and hourly, signs what was stored and never signed.
func TestLabelsSetBeforeAKillGetTheirVariantAtStart(t *testing.T) {
	srv, st, _ := newAPI(t)
	call(t, srv, "POST", "/v1/offices", `{"name":"berlin"}`, token)
	v1 := uploadBytes(t, srv, "hello-1.tar.gz", "hello one")
	v2 := uploadBytes(t, srv, "hello-2.tar.gz", "hello two")
	const id = "ag-0000000000000001"
	enrolAgent(t, st, "berlin", id, "kiosk-1")
	enrolAgent(t, st, "berlin", "ag-0000000000000002", "pc-2")
	if code, out := call(t, srv, "PUT", "/v1/offices/berlin/policy", pkgYAML("", "hello", "1", v1), token); code != 200 {
		t.Fatalf("office policy: %d %v", code, out)
	}
	if code, out := call(t, srv, "PUT", "/v1/policies/kiosks", pkgYAML("targets: {labels: [kiosk]}\n", "hello", "2", v2), token); code != 201 {
		t.Fatalf("named policy: %d %v", code, out)
	}

	// setLabels' first durable step, then the kill.
	if _, err := st.UpdateMember(id, func(m *store.Member) { m.Labels = map[string]string{"kiosk": ""} }); err != nil {
		t.Fatal(err)
	}

	// Restart; the admin, who got no answer, sets the label again.
	srv2, _ := restarted(t, st)
	if code, out := call(t, srv2, "PATCH", "/v1/agents/kiosk-1/labels", `{"set":{"kiosk":""}}`, token); code != 200 {
		t.Fatalf("retry: %d %v", code, out)
	}

	p, err := st.Policy("berlin")
	if err != nil {
		t.Fatal(err)
	}
	v, err := st.Variant("berlin", id)
	if err != nil || v.Revision != p.Revision {
		t.Fatalf("kiosk-1 is labelled kiosk but has no variant at berlin's revision %d (variant %+v, %v): it runs the office-wide policy %v",
			p.Revision, v, err, versions(signedPolicy(t, p.Signed)))
	}
	if got := versions(signedPolicy(t, v.Signed)); got["package/hello"] != "2" {
		t.Fatalf("kiosk-1's variant: %v, want hello 2", got)
	}
}
