package api

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

func apiOf(t *testing.T, srv *httptest.Server) *API {
	t.Helper()
	return srv.Config.Handler.(*API)
}

// An artifact nothing names is removed with its record, its figures and
// its bytes; one that an office's policy, a named policy, a catalog patch
// or a release still waiting for its relay names is refused, and the
// answer says what names it.
func TestArtifactIsRemovedOnlyWhenNothingNamesIt(t *testing.T) {
	srv, st, _ := newAPI(t)
	a := apiOf(t, srv)
	files := a.d.Files.(*hashingUploader)
	for _, o := range []string{`{"name":"berlin"}`, `{"name":"lyon","mode":"distribution","distribution_server":"10.4.0.5:8090"}`} {
		if code, out := call(t, srv, "POST", "/v1/offices", o, token); code != 201 {
			t.Fatalf("office %s: %d %v", o, code, out)
		}
	}
	mine := upload(t, srv.URL, "office-1.tar.gz", "the office's package")
	named := upload(t, srv.URL, "named-1.tar.gz", "a named policy's package")
	patched := upload(t, srv.URL, "hello-2.0.0.tar.gz", "a patch's package")
	released := upload(t, srv.URL, "lyon-1.tar.gz", "what lyon's agents are told")
	later := upload(t, srv.URL, "lyon-2.tar.gz", "what lyon's relay is still staging")
	unused := upload(t, srv.URL, "unused-1.tar.gz", "nothing names this one")

	steps := []struct{ method, path, body string }{
		{"PUT", "/v1/offices/berlin/policy", pkgYAML("", "office", "1", mine)},
		{"PUT", "/v1/policies/kiosks", pkgYAML("targets: {labels: [kiosk]}\n", "named", "1", named)},
		{"POST", "/v1/patches/import", "patches:\n  - {id: OUT-1, title: fix, severity: high, package: hello, fixed_version: 2.0.0, artifact: " + patched + "}\n"},
		{"PUT", "/v1/offices/lyon/policy", pkgYAML("", "lyon", "1", released)},
	}
	for _, s := range steps {
		if code, out := call(t, srv, s.method, s.path, s.body, token); code/100 != 2 {
			t.Fatalf("%s %s: %d %v", s.method, s.path, code, out)
		}
	}
	// Lyon's relay staged revision 1, which went to its agents; revision 2
	// waits for it.
	p, err := st.Policy("lyon")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := st.Release("lyon", p.Revision, time.Now()); !ok || err != nil {
		t.Fatalf("release lyon %d: %v %v", p.Revision, ok, err)
	}
	if code, out := call(t, srv, "PUT", "/v1/offices/lyon/policy", pkgYAML("", "lyon", "2", later), token); code != 200 {
		t.Fatalf("lyon revision 2: %d %v", code, out)
	}

	for sha, user := range map[string]string{
		mine:     "the policy of office berlin",
		named:    "policy kiosks",
		patched:  "patch OUT-1 of the catalog",
		released: fmt.Sprintf("revision %d of office lyon, which its agents are told", p.Revision),
		later:    "the policy of office lyon",
	} {
		code, out := call(t, srv, "DELETE", "/v1/artifacts/"+sha, "", token)
		if code != 409 || !strings.Contains(fmt.Sprint(out["error"]), "is in use: "+user) {
			t.Errorf("remove %s: %d %v; want 409 naming %q", sha[:12], code, out, user)
		}
		if _, err := st.Artifact(sha); err != nil {
			t.Errorf("a refused removal took the record of %s: %v", sha[:12], err)
		}
		if _, there, _ := files.Stat(t.Context(), sha); !there {
			t.Errorf("a refused removal took the bytes of %s", sha[:12])
		}
	}

	if err := st.PutArtifactBytes([]store.ArtifactBytes{{SHA256: unused, Member: "ag-1", Office: "berlin", Relay: 10}}); err != nil {
		t.Fatal(err)
	}
	code, out := call(t, srv, "DELETE", "/v1/artifacts/sha256:"+unused, "", token)
	if code != 200 || out["name"] != "unused-1.tar.gz" || out["freed_file_server"] != true {
		t.Fatalf("remove the unused artifact: %d %v", code, out)
	}
	if _, err := st.Artifact(unused); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("record after removal: %v", err)
	}
	if f, err := st.ArtifactBytesOf(unused); err != nil || len(f) != 0 {
		t.Errorf("figures after removal: %v %v", f, err)
	}
	if _, there, _ := files.Stat(t.Context(), unused); there {
		t.Error("the file server still holds the removed artifact")
	}
	if code, out := call(t, srv, "DELETE", "/v1/artifacts/"+unused, "", token); code != 404 {
		t.Errorf("remove it again: %d %v, want 404", code, out)
	}
	if code, out := call(t, srv, "DELETE", "/v1/artifacts/not-a-hash", "", token); code != 400 || !strings.Contains(fmt.Sprint(out["error"]), "not a SHA-256") {
		t.Errorf("malformed hash: %d %v", code, out)
	}

	// Once berlin's policy no longer names it, its artifact goes.
	if code, out := call(t, srv, "PUT", "/v1/offices/berlin/policy", "items: []\n", token); code != 200 {
		t.Fatalf("empty berlin's policy: %d %v", code, out)
	}
	if code, out := call(t, srv, "DELETE", "/v1/artifacts/"+mine, "", token); code != 200 {
		t.Errorf("remove berlin's former artifact: %d %v", code, out)
	}
	// And a policy that names it now is told it was never uploaded.
	if code, out := call(t, srv, "PUT", "/v1/offices/berlin/policy", pkgYAML("", "office", "1", mine), token); code != 400 || !strings.Contains(fmt.Sprint(out["error"]), "never uploaded") {
		t.Errorf("apply a policy naming the removed artifact: %d %v", code, out)
	}
}

// Bytes left on the file server by a removal cut short (the record went
// first) are removed by calling again; an upload whose bytes a removal
// took while they went up is refused rather than recorded without them.
func TestArtifactRemovalFinishesAndUploadsDoNotOutliveIt(t *testing.T) {
	srv, st, _ := newAPI(t)
	files := apiOf(t, srv).d.Files.(*hashingUploader)
	sha := upload(t, srv.URL, "left-1.tar.gz", "bytes whose record went")
	if _, err := st.DeleteArtifact(sha); err != nil {
		t.Fatal(err)
	}
	code, out := call(t, srv, "DELETE", "/v1/artifacts/"+sha, "", token)
	if code != 200 || out["freed_file_server"] != true || out["name"] != nil {
		t.Fatalf("remove bytes left behind: %d %v", code, out)
	}
	if _, there, _ := files.Stat(t.Context(), sha); there {
		t.Error("the bytes are still there")
	}

	files.dropNext = true // a removal ran while the bytes went up
	code, out = call(t, srv, "POST", "/v1/artifacts?name=raced.tar.gz", "raced bytes", token)
	if code != 409 || !strings.Contains(fmt.Sprint(out["error"]), "removed while it was uploaded") {
		t.Fatalf("upload whose bytes went: %d %v", code, out)
	}
	if arts, _ := st.Artifacts(); len(arts) != 0 {
		t.Errorf("recorded without bytes: %v", arts)
	}
}

// Applies that name an artifact and removals of it race: whichever comes
// first wins, and a policy never names an artifact that is gone.
func TestArtifactRemovalRacingAppliesNeverLeavesAPolicyWithoutItsArtifact(t *testing.T) {
	srv, st, _ := newAPI(t)
	if code, out := call(t, srv, "POST", "/v1/offices", `{"name":"berlin"}`, token); code != 201 {
		t.Fatalf("office: %d %v", code, out)
	}
	for i := range 20 {
		sha := upload(t, srv.URL, fmt.Sprintf("race-%d.tar.gz", i), fmt.Sprintf("race %d", i))
		var wg sync.WaitGroup
		var applied, removed int
		wg.Go(func() {
			if code, _ := call(t, srv, "PUT", "/v1/offices/berlin/policy", pkgYAML("", "race", "1", sha), token); code == 200 {
				applied = code
			}
		})
		wg.Go(func() {
			if code, _ := call(t, srv, "DELETE", "/v1/artifacts/"+sha, "", token); code == 200 {
				removed = code
			}
		})
		wg.Wait()
		if applied != 0 && removed != 0 {
			t.Fatalf("round %d: the policy was applied and its artifact removed", i)
		}
		if applied != 0 {
			if _, err := st.Artifact(sha); err != nil {
				t.Fatalf("round %d: applied, but the artifact is gone: %v", i, err)
			}
		}
		if code, out := call(t, srv, "PUT", "/v1/offices/berlin/policy", "items: []\n", token); code != 200 {
			t.Fatalf("reset: %d %v", code, out)
		}
	}
}

// The audit trail names what was uploaded and removed: the hash as the
// target, the name and size in the detail.
func TestArtifactChangesAreAuditedWithWhatChanged(t *testing.T) {
	x := newAuthAPI(t)
	sha := upload(t, x.srv.URL, "hello-1.0.0.tar.gz", "twelve bytes")
	if code, out := call(t, x.srv, "DELETE", "/v1/artifacts/"+sha, "", token); code != 200 {
		t.Fatalf("remove: %d %v", code, out)
	}
	for action, detail := range map[string]string{"artifact.upload": "hello-1.0.0.tar.gz, 12 bytes", "artifact.remove": "hello-1.0.0.tar.gz, 12 bytes"} {
		code, out := call(t, x.srv, "GET", "/v1/audit?action="+action, "", token)
		events, _ := out["events"].([]any)
		if code != 200 || len(events) != 1 {
			t.Fatalf("audit of %s: %d %v", action, code, out)
		}
		e := events[0].(map[string]any)
		if e["target"] != "artifact "+sha || e["detail"] != detail {
			t.Errorf("%s recorded as %v", action, e)
		}
	}
}
