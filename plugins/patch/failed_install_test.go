package patch

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/packages"
	"github.com/outposthq/outpost/plugins/plugintest"
	"github.com/outposthq/outpost/plugins/proto"
)

// writeTarGz writes a .tar.gz of files (name → content, mode 0755) and
// returns its path and artifact.
func writeTarGz(t *testing.T, files map[string]string) (string, *wire.Artifact) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "hello-2.0.0.tar.gz")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return p, &wire.Artifact{Sha256: hex.EncodeToString(sum[:]), Size: int64(buf.Len()), Name: "hello-2.0.0.tar.gz"}
}

// TestAPatchWhoseInstallFailedAfterChangingThePackageRollsBack: the fixed
// version was installed, but its post-install hook failed, so the install
// reported an error. The package is the fixed version now, and the backup
// of the version before is the only copy of it: the patch must still be
// known as applied, so that setting it absent puts that version back.
// Its record was dropped on any error, leaving the rollback to say
// "nothing to roll back" over the fixed version, and the backup orphaned.
func TestAPatchWhoseInstallFailedAfterChangingThePackageRollsBack(t *testing.T) {
	ctx := context.Background()
	log := logging.Discard()
	root := t.TempDir()
	p1, a1 := plugintest.Sample(t, "hello-1.0.0.tar.gz")
	hello := &wire.Item{Id: "package/hello", Kind: "package", State: wire.State_STATE_PRESENT, Artifact: a1,
		Spec: &wire.Item_Package{Package: &wire.PackageSpec{Name: "hello", Version: "1.0.0"}}}
	if _, err := packages.New(log).Apply(ctx, &proto.ApplyRequest{Root: root, Item: hello, ArtifactPath: p1}); err != nil {
		t.Fatal(err)
	}
	p2, a2 := writeTarGz(t, map[string]string{
		"bin/hello":              "#!/bin/sh\necho hello 2.0.0\n",
		packages.HookPostInstall: "#!/bin/sh\necho cannot start the service >&2\nexit 1\n",
	})
	item := func(state wire.State) *wire.Item {
		return &wire.Item{Id: "patch/OUT-1", Kind: "patch", State: state, Artifact: a2,
			Spec: &wire.Item_Patch{Patch: &wire.PatchSpec{Id: "OUT-1", Package: "hello", FixedVersion: "2.0.0", RollbackAllowed: true}}}
	}
	_, err := New(log).Apply(ctx, &proto.ApplyRequest{Root: root, Item: item(wire.State_STATE_PRESENT), ArtifactPath: p2})
	if err == nil || !strings.Contains(err.Error(), "post-install") {
		t.Fatalf("apply = %v; want the failed post-install hook", err)
	}
	if mf, _ := packages.Installed(root, "hello"); mf == nil || mf.Version != "2.0.0" {
		t.Fatalf("package after the failed patch: %+v; want 2.0.0 installed", mf)
	}

	r, err := New(log).Apply(ctx, &proto.ApplyRequest{Root: root, Item: item(wire.State_STATE_ABSENT)})
	if err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if mf, _ := packages.Installed(root, "hello"); mf == nil || mf.Version != "1.0.0" {
		t.Fatalf("rollback said %q, and the package is %+v; want 1.0.0 back", r.GetMessage(), mf)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "opt", "hello", "bin", "hello")); !strings.Contains(string(b), "hello 1.0.0") {
		t.Fatalf("bin/hello after rollback = %q", b)
	}
}

// TestAPatchWhosePostInstallHookFailedIsNotCompliantAndRunsItAgain: the
// fixed version is in place but its post-install hook failed (or the
// plugin was killed while it ran). As for a package item, the patch is
// not compliant until the hook succeeds, and the next apply runs it
// again: it was reported installed, and the hook never ran again.
func TestAPatchWhosePostInstallHookFailedIsNotCompliantAndRunsItAgain(t *testing.T) {
	ctx := context.Background()
	log := logging.Discard()
	root := t.TempDir()
	p1, a1 := plugintest.Sample(t, "hello-1.0.0.tar.gz")
	hello := &wire.Item{Id: "package/hello", Kind: "package", State: wire.State_STATE_PRESENT, Artifact: a1,
		Spec: &wire.Item_Package{Package: &wire.PackageSpec{Name: "hello", Version: "1.0.0"}}}
	if _, err := packages.New(log).Apply(ctx, &proto.ApplyRequest{Root: root, Item: hello, ArtifactPath: p1}); err != nil {
		t.Fatal(err)
	}
	// The hook fails the first time it runs and succeeds after.
	ran := filepath.Join(t.TempDir(), "ran")
	p2, a2 := writeTarGz(t, map[string]string{
		"bin/hello":              "#!/bin/sh\necho hello 2.0.0\n",
		packages.HookPostInstall: "#!/bin/sh\nif [ -e " + ran + " ]; then echo ok >> " + ran + "; exit 0; fi\ntouch " + ran + "\nexit 1\n",
	})
	item := &wire.Item{Id: "patch/OUT-1", Kind: "patch", State: wire.State_STATE_PRESENT, Artifact: a2,
		Spec: &wire.Item_Patch{Patch: &wire.PatchSpec{Id: "OUT-1", Package: "hello", FixedVersion: "2.0.0"}}}
	m := New(log)
	if _, err := m.Apply(ctx, &proto.ApplyRequest{Root: root, Item: item, ArtifactPath: p2}); err == nil {
		t.Fatal("apply succeeded; want the post-install hook's failure")
	}
	r, err := m.Scan(ctx, &proto.ScanRequest{Root: root, Items: []*wire.Item{item}})
	if err != nil {
		t.Fatal(err)
	}
	if st := r.GetItems()[0]; st.GetCompliant() {
		t.Fatalf("scan = %v; want not compliant while the post-install hook has not succeeded", st)
	}
	if _, err := m.Apply(ctx, &proto.ApplyRequest{Root: root, Item: item, ArtifactPath: p2}); err != nil {
		t.Fatalf("apply again: %v", err)
	}
	if b, _ := os.ReadFile(ran); string(b) != "ok\n" {
		t.Fatalf("the post-install hook did not run again (it left %q)", b)
	}
	if mf, _ := packages.Installed(root, "hello"); mf == nil || mf.PostInstallPending {
		t.Fatalf("manifest after the retry: %+v; want the hook no longer pending", mf)
	}
	r, err = m.Scan(ctx, &proto.ScanRequest{Root: root, Items: []*wire.Item{item}})
	if err != nil {
		t.Fatal(err)
	}
	if st := r.GetItems()[0]; !st.GetCompliant() {
		t.Fatalf("scan after the retry = %v; want compliant", st)
	}
}
