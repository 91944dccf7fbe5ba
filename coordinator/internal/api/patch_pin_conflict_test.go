package api

import (
	"fmt"
	"strings"
	"testing"
)

// A policy that installs hello 1.0.0 and an approved patch that fixes hello
// in 2.0.0 replaced each other's version at every run, both reporting
// compliant and "repaired drift" each time (found following the README's
// own walk-through). The approval is refused, naming both and what to do,
// and not kept; so is a policy that would pin an older version under an
// approval. A pin at the fixed version or later already has the fix.
func TestAnApprovedPatchAndAnOlderPackagePinAreRefusedTogether(t *testing.T) {
	srv, st, _ := newAPI(t)
	if code, out := call(t, srv, "POST", "/v1/offices", `{"name":"berlin"}`, token); code != 201 {
		t.Fatalf("office: %d %v", code, out)
	}
	v1 := upload(t, srv.URL, "hello-1.0.0.tar.gz", "hello one")
	v2 := upload(t, srv.URL, "hello-2.0.0.tar.gz", "hello two")
	pin := func(version, sha string) string {
		return fmt.Sprintf("items:\n  - {kind: package, name: hello, version: %q, artifact: %s}\n", version, sha)
	}
	if code, out := call(t, srv, "PUT", "/v1/offices/berlin/policy", pin("1.0.0", v1), token); code != 200 {
		t.Fatalf("policy: %d %v", code, out)
	}
	feed := fmt.Sprintf("patches:\n  - {id: OUT-1, title: fix, severity: high, package: hello, fixed_version: 2.0.0, artifact: %s}\n", v2)
	if code, out := call(t, srv, "POST", "/v1/patches/import", feed, token); code != 200 {
		t.Fatalf("import: %d %v", code, out)
	}
	code, out := call(t, srv, "POST", "/v1/patches/OUT-1/approve", `{"office":"berlin"}`, token)
	msg := fmt.Sprint(out["error"])
	if code != 409 || !strings.Contains(msg, "package/hello") || !strings.Contains(msg, "1.0.0") || !strings.Contains(msg, "Raise the package item to 2.0.0") {
		t.Fatalf("approve against an older pin: %d %v; want 409 naming the item, both versions and what to do", code, out)
	}
	if aps, _ := st.Approvals("berlin"); len(aps) != 0 {
		t.Fatalf("the refused approval was kept: %v", aps)
	}
	// With the pin raised to the fix, the approval goes through.
	if code, out := call(t, srv, "PUT", "/v1/offices/berlin/policy", pin("2.0.0", v2), token); code != 200 {
		t.Fatalf("policy: %d %v", code, out)
	}
	if code, out := call(t, srv, "POST", "/v1/patches/OUT-1/approve", `{"office":"berlin"}`, token); code != 200 {
		t.Fatalf("approve with the pin at the fix: %d %v", code, out)
	}
	// And the older pin cannot come back under the approval.
	if code, out := call(t, srv, "PUT", "/v1/offices/berlin/policy", pin("1.0.0", v1), token); code != 409 || !strings.Contains(fmt.Sprint(out["error"]), "OUT-1") {
		t.Fatalf("an older pin under the approval: %d %v; want 409", code, out)
	}
	items := signedItems(t, st, "berlin")
	if len(items) != 2 || items[0].GetPackage().GetVersion() != "2.0.0" {
		t.Fatalf("the office's policy changed: %v", items)
	}
}
