package api

import (
	"fmt"
	"testing"
)

// Supersedes is transitive (patches.Superseded follows the chain through
// the catalog): OUT-3 supersedes OUT-2, which supersedes OUT-1, so an
// office that approves all three (as a rule does) installs OUT-3 alone.
// Removing the middle one (a withdrawn patch, the main reason to remove
// one) cuts the chain: OUT-1, older than OUT-3 which is still approved,
// is installed again, although nothing said OUT-3 no longer replaces it.
func TestRemovingAMiddlePatchKeepsOlderOnesSuperseded(t *testing.T) {
	srv, st, _ := newAPI(t)
	if code, out := call(t, srv, "POST", "/v1/offices", `{"name":"berlin"}`, token); code != 201 {
		t.Fatalf("office: %d %v", code, out)
	}
	a1 := upload(t, srv.URL, "hello-1.tar.gz", "hello 1")
	a2 := upload(t, srv.URL, "hello-2.tar.gz", "hello 2")
	a3 := upload(t, srv.URL, "hello-3.tar.gz", "hello 3")
	feed := "patches:\n" +
		"  - {id: OUT-1, title: one, severity: high, package: hello, fixed_version: \"1\", artifact: " + a1 + "}\n" +
		"  - {id: OUT-2, title: two, severity: high, package: hello, fixed_version: \"2\", artifact: " + a2 + ", supersedes: [OUT-1]}\n" +
		"  - {id: OUT-3, title: three, severity: high, package: hello, fixed_version: \"3\", artifact: " + a3 + ", supersedes: [OUT-2]}\n"
	if code, out := call(t, srv, "POST", "/v1/patches/import", feed, token); code != 200 {
		t.Fatalf("import: %d %v", code, out)
	}
	for _, id := range []string{"OUT-1", "OUT-2", "OUT-3"} {
		if code, out := call(t, srv, "POST", "/v1/patches/"+id+"/approve", `{"office":"berlin"}`, token); code != 200 {
			t.Fatalf("approve %s: %d %v", id, code, out)
		}
	}
	p, err := st.Policy("berlin")
	if err != nil {
		t.Fatal(err)
	}
	if signedHasItem(t, p.Signed, "patch/OUT-1") || !signedHasItem(t, p.Signed, "patch/OUT-3") {
		t.Fatal("before the removal berlin should install OUT-3 alone")
	}
	code, out := call(t, srv, "DELETE", "/v1/patches/OUT-2?revoke=true", "", token)
	if code != 200 || fmt.Sprint(out["superseded"]) != "[]" {
		t.Fatalf("remove OUT-2: %d %v; want OUT-1 not offered again (OUT-3 still supersedes it)", code, out)
	}
	if p3, err := st.Patch("OUT-3"); err != nil || fmt.Sprint(p3.Supersedes) != "[OUT-1]" {
		t.Errorf("OUT-3 after OUT-2 left: %+v %v; want it to supersede OUT-1 in OUT-2's place", p3, err)
	}
	p, err = st.Policy("berlin")
	if err != nil {
		t.Fatal(err)
	}
	if signedHasItem(t, p.Signed, "patch/OUT-1") {
		t.Errorf("after OUT-2 left the catalog, berlin installs OUT-1 (hello 1) again beside OUT-3 (hello 3), which superseded it through OUT-2")
	}
}
