package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/testutil"
)

// Against a real coordinator and a real MinIO: an artifact a policy names
// is not removed, and once the policy lets go of it, artifact rm takes its
// record and its bytes on the file server.
func TestArtifactRmAgainstARealCoordinatorAndFileServer(t *testing.T) {
	m := testutil.StartMinIO(t)
	h := coordinatortest.New(t, coordinatortest.WithMinIO(m))
	h.CreateOffice("berlin", nil)
	outpost := func(args ...string) cliResult {
		t.Helper()
		return runCLI(t, nil, cliRun{env: map[string]string{"OUTPOST_SERVER": h.URL, "OUTPOST_TOKEN": h.Token}}, args...)
	}
	dir := t.TempDir()
	pkg := writeFile(t, dir, "hello-1.0.0.tar.gz", []byte("bytes of hello 1.0.0"))
	res := outpost("artifact", "push", "--quiet", pkg)
	if res.code != 0 {
		t.Fatalf("push: %+v", res)
	}
	sha := strings.TrimSpace(res.stdout)
	key := "sha256/" + sha
	if res := outpost("artifact", "push", "--name", "other-name.tar.gz", pkg); res.code != 0 || strings.TrimSpace(res.stdout) != sha ||
		!strings.Contains(res.stderr, "already stored, as hello-1.0.0.tar.gz since ") {
		t.Fatalf("push the same bytes again: %+v", res)
	}
	bucket := coordinator.DefaultConfig().FileServer.Bucket
	if _, err := m.Client(t).StatObject(t.Context(), bucket, key, minio.StatObjectOptions{}); err != nil {
		t.Fatalf("the pushed artifact is not on the file server: %v", err)
	}
	policy := writeFile(t, dir, "berlin.yaml", []byte("items:\n  - kind: package\n    name: hello\n    version: \"1.0.0\"\n    artifact: "+sha+"\n"))
	if res := outpost("policy", "apply", "--office", "berlin", policy); res.code != 0 {
		t.Fatalf("apply: %+v", res)
	}

	res = outpost("artifact", "rm", "hello-1.0.0.tar.gz")
	if res.code != 1 || !strings.Contains(res.stderr, "is in use: the policy of office berlin") {
		t.Fatalf("rm while berlin's policy names it: %+v", res)
	}
	if _, err := m.Client(t).StatObject(t.Context(), bucket, key, minio.StatObjectOptions{}); err != nil {
		t.Fatalf("a refused removal took the bytes: %v", err)
	}

	empty := writeFile(t, dir, "empty.yaml", []byte("items: []\n"))
	if res := outpost("policy", "apply", "--office", "berlin", empty); res.code != 0 {
		t.Fatalf("apply an empty policy: %+v", res)
	}
	res = outpost("artifact", "rm", sha[:10])
	if res.code != 0 || res.stdout != "artifact "+sha+" removed: hello-1.0.0.tar.gz (20 B)\n" {
		t.Fatalf("rm: %+v", res)
	}
	if _, err := m.Client(t).StatObject(t.Context(), bucket, key, minio.StatObjectOptions{}); minio.ToErrorResponse(err).Code != minio.NoSuchKey {
		t.Fatalf("the file server still holds the removed artifact: %v", err)
	}
	if res := outpost("artifact", "list"); !strings.Contains(res.stderr, "no artifacts yet") {
		t.Errorf("list after removal: %+v", res)
	}
	if res := outpost("artifact", "rm", sha); res.code != 1 || !strings.Contains(res.stderr, "no artifact "+sha+": it was never uploaded, or is removed already") {
		t.Errorf("rm again: %+v", res)
	}
	// The same bytes pushed again are an artifact again.
	if res := outpost("artifact", "push", "--quiet", filepath.Join(dir, "hello-1.0.0.tar.gz")); res.code != 0 || strings.TrimSpace(res.stdout) != sha {
		t.Fatalf("push again: %+v", res)
	}
	if _, err := m.Client(t).StatObject(t.Context(), bucket, key, minio.StatObjectOptions{}); err != nil {
		t.Fatalf("pushed again, the artifact is not on the file server: %v", err)
	}
}
