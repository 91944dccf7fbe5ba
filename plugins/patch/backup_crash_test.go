package patch

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/packages"
	"github.com/outposthq/outpost/plugins/plugintest"
	"github.com/outposthq/outpost/plugins/proto"
)

func archiveMember(t *testing.T, archive, name string) []byte {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in %s: %v", name, archive, err)
		}
		if strings.TrimPrefix(h.Name, "./") == name {
			b, _ := io.ReadAll(tr)
			return b
		}
	}
}

// A patch with rollback is applied: the backup of 1.0.0 and the record are
// written, then the install of 2.0.0 begins and the process is killed
// after its first file (bin/hello) was put in place. The agent applies the
// patch again after the restart. The backup made before the kill is the
// only copy of 1.0.0 on the host: it must survive the retry, and rolling
// back must still give 1.0.0 back.
func TestPatchRetriedAfterAKillKeepsItsBackup(t *testing.T) {
	ctx := context.Background()
	log := logging.Discard()
	root := t.TempDir()
	p1, a1 := plugintest.Sample(t, "hello-1.0.0.tar.gz")
	p2, a2 := plugintest.Sample(t, "hello-2.0.0.tar.gz")
	hello := &wire.Item{Id: "package/hello", Kind: "package", State: wire.State_STATE_PRESENT, Artifact: a1,
		Spec: &wire.Item_Package{Package: &wire.PackageSpec{Name: "hello", Version: "1.0.0"}}}
	if _, err := packages.New(log).Apply(ctx, &proto.ApplyRequest{Root: root, Item: hello, ArtifactPath: p1}); err != nil {
		t.Fatal(err)
	}
	item := func(state wire.State) *wire.Item {
		return &wire.Item{Id: "patch/OUT-1", Kind: "patch", State: state, Artifact: a2,
			Spec: &wire.Item_Patch{Patch: &wire.PatchSpec{Id: "OUT-1", Package: "hello", FixedVersion: "2.0.0", RollbackAllowed: true}}}
	}

	// The first attempt, up to the kill: exactly what Apply does before it
	// hands over to the package code (backup, then record) ...
	mf, err := packages.Installed(root, "hello")
	if err != nil || mf == nil {
		t.Fatal(mf, err)
	}
	if err := os.MkdirAll(dir(root), 0o700); err != nil {
		t.Fatal(err)
	}
	rec := &record{Patch: "OUT-1", Package: mf.Name, PreviousVersion: mf.Version, Prefix: mf.Prefix, Backup: "OUT-1.backup.tar.gz"}
	backup := filepath.Join(dir(root), rec.Backup)
	if err := packages.Backup(root, mf, backup); err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(rec, "", "  ")
	if err := fsutil.WriteFileAtomic(filepath.Join(dir(root), "OUT-1.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	goodBackup, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	// ... and the first file of 2.0.0 renamed into place by the extract
	// when the process is killed (the package's manifest still says 1.0.0).
	bin := filepath.Join(root, "opt", "hello", "bin", "hello")
	if err := os.WriteFile(bin, archiveMember(t, p2, "bin/hello"), 0o755); err != nil {
		t.Fatal(err)
	}

	// Restart: the agent applies the patch again.
	_, applyErr := New(log).Apply(ctx, &proto.ApplyRequest{Root: root, Item: item(wire.State_STATE_PRESENT), ArtifactPath: p2})
	t.Logf("apply after the kill: %v", applyErr)

	got, err := os.ReadFile(backup)
	if err != nil || string(got) != string(goodBackup) {
		t.Errorf("the backup of 1.0.0 made before the kill is gone after the retry (read: %d bytes, %v; had %d bytes)", len(got), err, len(goodBackup))
	}
	if applyErr != nil {
		// The patch is stuck; the admin rolls it back.
		_, err := New(log).Apply(ctx, &proto.ApplyRequest{Root: root, Item: item(wire.State_STATE_ABSENT)})
		if err != nil {
			t.Errorf("rollback after the failed retry: %v (1.0.0 cannot be restored)", err)
		}
	}
}

// Rollback reinstalled 1.0.0 from the backup, removed the backup, then the
// record; a kill between the two removals left the record of a patch whose
// backup is gone, and every later apply of the absent item failed with "the
// backup is gone", although 1.0.0 was back. The record goes first now, and
// a record whose backup is gone while the version before is installed is
// taken as done.
func TestRollbackWhoseBackupIsGoneButDoneIsDone(t *testing.T) {
	ctx := context.Background()
	log := logging.Discard()
	root := t.TempDir()
	p1, a1 := plugintest.Sample(t, "hello-1.0.0.tar.gz")
	p2, a2 := plugintest.Sample(t, "hello-2.0.0.tar.gz")
	hello := &wire.Item{Id: "package/hello", Kind: "package", State: wire.State_STATE_PRESENT, Artifact: a1,
		Spec: &wire.Item_Package{Package: &wire.PackageSpec{Name: "hello", Version: "1.0.0"}}}
	if _, err := packages.New(log).Apply(ctx, &proto.ApplyRequest{Root: root, Item: hello, ArtifactPath: p1}); err != nil {
		t.Fatal(err)
	}
	item := func(state wire.State) *wire.Item {
		return &wire.Item{Id: "patch/OUT-1", Kind: "patch", State: state, Artifact: a2,
			Spec: &wire.Item_Patch{Patch: &wire.PatchSpec{Id: "OUT-1", Package: "hello", FixedVersion: "2.0.0", RollbackAllowed: true}}}
	}
	if _, err := New(log).Apply(ctx, &proto.ApplyRequest{Root: root, Item: item(wire.State_STATE_PRESENT), ArtifactPath: p2}); err != nil {
		t.Fatal(err)
	}
	recPath := filepath.Join(dir(root), "OUT-1.json")
	kept, err := os.ReadFile(recPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(log).Apply(ctx, &proto.ApplyRequest{Root: root, Item: item(wire.State_STATE_ABSENT)}); err != nil {
		t.Fatal(err)
	}
	// The state the kill leaves: backup removed, record not yet.
	if err := os.WriteFile(recPath, kept, 0o600); err != nil {
		t.Fatal(err)
	}
	if mf, _ := packages.Installed(root, "hello"); mf == nil || mf.Version != "1.0.0" {
		t.Fatalf("package after rollback: %+v", mf)
	}
	if _, err := New(log).Apply(ctx, &proto.ApplyRequest{Root: root, Item: item(wire.State_STATE_ABSENT)}); err != nil {
		t.Errorf("apply of the absent patch after the restart: %v (1.0.0 is installed already)", err)
	}
}
