package cli

import (
	"strings"
	"testing"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/testutil"
)

// Against a real coordinator and a real MinIO, a patch's whole life: it is
// imported and approved; patch rm is refused while the approval stands and
// says how to go on; with --revoke it goes, with the approval; then its
// artifact, which nothing names any more, can go too.
func TestPatchRmAgainstARealCoordinator(t *testing.T) {
	m := testutil.StartMinIO(t)
	h := coordinatortest.New(t, coordinatortest.WithMinIO(m))
	h.CreateOffice("berlin", nil)
	outpost := func(args ...string) cliResult {
		t.Helper()
		return runCLI(t, nil, cliRun{env: map[string]string{"OUTPOST_SERVER": h.URL, "OUTPOST_TOKEN": h.Token}}, args...)
	}
	dir := t.TempDir()
	res := outpost("artifact", "push", "--quiet", writeFile(t, dir, "hello-2.0.0.tar.gz", []byte("bytes of hello 2.0.0")))
	if res.code != 0 {
		t.Fatalf("push: %+v", res)
	}
	sha := strings.TrimSpace(res.stdout)
	feed := writeFile(t, dir, "feed.yaml", []byte("patches:\n  - {id: OUT-1, title: hello fix, severity: high, package: hello, fixed_version: 2.0.0, artifact: "+sha+"}\n"))
	for _, args := range [][]string{{"patch", "import", feed}, {"patch", "approve", "OUT-1", "--office", "berlin"}} {
		if res := outpost(args...); res.code != 0 {
			t.Fatalf("%v: %+v", args, res)
		}
	}

	res = outpost("patch", "rm", "OUT-1")
	if res.code != 1 || !strings.Contains(res.stderr, "patch OUT-1 is approved for office berlin; revoke the approvals first (outpost patch revoke OUT-1 --office NAME), or remove it with them (--revoke)") {
		t.Fatalf("rm while approved: %+v", res)
	}
	res = outpost("patch", "rm", "OUT-1", "--revoke")
	want := "patch OUT-1 removed from the catalog; every office's policy is signed again without it\n" +
		"  approvals revoked for 1 office: berlin\n" +
		"  its artifact stays on the file server: outpost artifact rm " + sha + " removes it once nothing else uses it\n"
	if res.code != 0 || res.stdout != want {
		t.Fatalf("rm --revoke: %+v\nwant stdout %q", res, want)
	}
	if res := outpost("patch", "list"); res.code != 0 || strings.Contains(res.stdout, "OUT-1") {
		t.Errorf("list after rm: %+v", res)
	}
	if res := outpost("patch", "rm", "OUT-1"); res.code != 1 || !strings.Contains(res.stderr, "no patch OUT-1 in the catalog (see outpost patch list)") {
		t.Errorf("rm again: %+v", res)
	}
	if res := outpost("artifact", "rm", sha); res.code != 0 {
		t.Errorf("the patch's artifact after the patch: %+v", res)
	}
	res = outpost("audit", "--action", "patch.remove")
	if res.code != 0 || !strings.Contains(res.stdout, "patch OUT-1") || !strings.Contains(res.stdout, "approvals revoked for berlin") {
		t.Errorf("audit: %+v", res)
	}
}
