package patch

import (
	"context"
	"encoding/json"
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

// patchEnv is a root with hello 1.0.0 installed by the package plugin and
// patch OUT-1 (fixed in 2.0.0, rollback allowed) applied to it.
type patchEnv struct {
	t    *testing.T
	root string
	pkgs *packages.Manager
	m    *Manager
}

func newPatchedEnv(t *testing.T) *patchEnv {
	t.Helper()
	e := &patchEnv{t: t, root: t.TempDir(), pkgs: packages.New(logging.Discard()), m: New(logging.Discard())}
	p1, a1 := plugintest.Sample(t, "hello-1.0.0.tar.gz")
	e.pkg("1.0.0", wire.State_STATE_PRESENT, p1, a1)
	p2, _ := plugintest.Sample(t, "hello-2.0.0.tar.gz")
	if _, err := e.apply(wire.State_STATE_PRESENT, p2); err != nil {
		t.Fatal(err)
	}
	e.wantVersion("2.0.0")
	return e
}

// pkg applies a package item for hello.
func (e *patchEnv) pkg(version string, state wire.State, path string, art *wire.Artifact) {
	e.t.Helper()
	item := &wire.Item{Id: "package/hello", Kind: "package", State: state, Artifact: art,
		Spec: &wire.Item_Package{Package: &wire.PackageSpec{Name: "hello", Version: version}}}
	if _, err := e.pkgs.Apply(context.Background(), &proto.ApplyRequest{Root: e.root, Item: item, ArtifactPath: path}); err != nil {
		e.t.Fatalf("package hello %s: %v", version, err)
	}
}

func (e *patchEnv) item(state wire.State) *wire.Item {
	_, a2 := plugintest.Sample(e.t, "hello-2.0.0.tar.gz")
	return &wire.Item{Id: "patch/OUT-1", Kind: "patch", State: state, Artifact: a2,
		Spec: &wire.Item_Patch{Patch: &wire.PatchSpec{Id: "OUT-1", Package: "hello", FixedVersion: "2.0.0", RollbackAllowed: true}}}
}

func (e *patchEnv) apply(state wire.State, path string) (*proto.ApplyResponse, error) {
	return e.m.Apply(context.Background(), &proto.ApplyRequest{Root: e.root, Item: e.item(state), ArtifactPath: path})
}

func (e *patchEnv) scan(state wire.State) *proto.ItemState {
	e.t.Helper()
	r, err := e.m.Scan(context.Background(), &proto.ScanRequest{Root: e.root, Items: []*wire.Item{e.item(state)}})
	if err != nil {
		e.t.Fatal(err)
	}
	return r.GetItems()[0]
}

// wantVersion fails unless hello is installed at version ("": not installed).
func (e *patchEnv) wantVersion(version string) {
	e.t.Helper()
	mf, err := packages.Installed(e.root, "hello")
	switch {
	case err != nil:
		e.t.Fatal(err)
	case version == "" && mf != nil:
		e.t.Fatalf("hello %s is installed; want it not installed", mf.Version)
	case version != "" && (mf == nil || mf.Version != version):
		got := "not installed"
		if mf != nil {
			got = mf.Version
		}
		e.t.Fatalf("hello is %s; want %s", got, version)
	}
}

// TestRollbackPutsBackOnlyOverWhatThePatchInstalled: rolling a patch back
// installed the version from before it whatever was installed by then. A
// package removed since (its package item set absent) came back, and one
// upgraded since past the fixed version was downgraded to the version the
// patch had fixed. The rollback now puts the version before back only
// over the fixed version; otherwise the patch's version is gone already,
// and the rollback forgets its record and backup, changing no package.
func TestRollbackPutsBackOnlyOverWhatThePatchInstalled(t *testing.T) {
	t.Run("package removed since", func(t *testing.T) {
		e := newPatchedEnv(t)
		e.pkg("", wire.State_STATE_ABSENT, "", nil)
		if st := e.scan(wire.State_STATE_ABSENT); st.GetCompliant() {
			t.Fatalf("scan = %v; want the patch's record to be forgotten by an apply", st)
		}
		r, err := e.apply(wire.State_STATE_ABSENT, "")
		if err != nil {
			t.Fatal(err)
		}
		e.wantVersion("")
		if !strings.Contains(r.GetMessage(), "nothing to roll back") {
			t.Errorf("rollback said %q", r.GetMessage())
		}
		if st := e.scan(wire.State_STATE_ABSENT); !st.GetCompliant() {
			t.Fatalf("scan after = %v", st)
		}
		if _, err := os.Stat(filepath.Join(dir(e.root), "OUT-1.backup.tar.gz")); err == nil {
			t.Error("the backup of a patch that is forgotten is still there")
		}
	})
	t.Run("package upgraded since", func(t *testing.T) {
		e := newPatchedEnv(t)
		p3, a3 := writeTarGz(t, map[string]string{"bin/hello": "#!/bin/sh\necho hello 3.0.0\n"})
		e.pkg("3.0.0", wire.State_STATE_PRESENT, p3, a3)
		if _, err := e.apply(wire.State_STATE_ABSENT, ""); err != nil {
			t.Fatal(err)
		}
		e.wantVersion("3.0.0")
		if st := e.scan(wire.State_STATE_ABSENT); !st.GetCompliant() {
			t.Fatalf("scan after = %v", st)
		}
	})
}

// TestPatchAppliedAgainBacksUpTheVersionItReplaces: a patch applied a
// second time (the package was moved below the fixed version since) took
// the backup of its first application as its own, the backup being kept
// for a retry after a kill; its rollback then put back the version from
// before the first, not the one it replaced. A backup is kept only while
// the version it holds is still the one installed.
func TestPatchAppliedAgainBacksUpTheVersionItReplaces(t *testing.T) {
	e := newPatchedEnv(t)
	p15, a15 := writeTarGz(t, map[string]string{"bin/hello": "#!/bin/sh\necho hello 1.5.0\n"})
	e.pkg("1.5.0", wire.State_STATE_PRESENT, p15, a15)
	p2, _ := plugintest.Sample(t, "hello-2.0.0.tar.gz")
	if _, err := e.apply(wire.State_STATE_PRESENT, p2); err != nil {
		t.Fatal(err)
	}
	e.wantVersion("2.0.0")
	if _, err := e.apply(wire.State_STATE_ABSENT, ""); err != nil {
		t.Fatal(err)
	}
	e.wantVersion("1.5.0")
}

// TestRecordNamingABackupElsewhereIsRefused: a patch's record names its
// backup by a file name, read from disk and joined to the state directory
// as it was. One that named "../../../../keep.tar.gz" had the rollback
// install that file as the package, then delete it. A record is checked
// as a manifest is now: its backup is the patch's own file or none.
func TestRecordNamingABackupElsewhereIsRefused(t *testing.T) {
	e := newPatchedEnv(t)
	p1, _ := plugintest.Sample(t, "hello-1.0.0.tar.gz")
	keep := filepath.Join(e.root, "keep.tar.gz")
	b, err := os.ReadFile(p1)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keep, b, 0o644); err != nil {
		t.Fatal(err)
	}
	recPath := filepath.Join(dir(e.root), "OUT-1.json")
	var rec record
	b, err = os.ReadFile(recPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	rec.Backup = "../../../../keep.tar.gz"
	b, _ = json.Marshal(rec)
	if err := os.WriteFile(recPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = e.apply(wire.State_STATE_ABSENT, "")
	if _, serr := os.Stat(keep); serr != nil {
		t.Fatalf("the rollback deleted a file outside the patches' state directory (apply: %v)", err)
	}
	if err == nil || !strings.Contains(err.Error(), "is corrupt") {
		t.Fatalf("rollback = %v; want the record refused as corrupt", err)
	}
	e.wantVersion("2.0.0")
}

// TestRollbackAfterAKillInThePatchsInstall: the install of the fixed
// version was killed once its files were in place, before its manifest
// was committed: the package's manifest still says 1.0.0, and the journal
// beside it says the install is to be finished. A rollback that judged by
// the manifest alone would take the patch as never installed and forget
// its backup, and the next apply of the package plugin would finish the
// install of 2.0.0 with no way back. The interrupted change is finished
// first, so the rollback puts 1.0.0 back.
func TestRollbackAfterAKillInThePatchsInstall(t *testing.T) {
	root := t.TempDir()
	pkgs := packages.New(logging.Discard())
	p1, a1 := plugintest.Sample(t, "hello-1.0.0.tar.gz")
	hello := &wire.Item{Id: "package/hello", Kind: "package", State: wire.State_STATE_PRESENT, Artifact: a1,
		Spec: &wire.Item_Package{Package: &wire.PackageSpec{Name: "hello", Version: "1.0.0"}}}
	if _, err := pkgs.Apply(context.Background(), &proto.ApplyRequest{Root: root, Item: hello, ArtifactPath: p1}); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(root, filepath.FromSlash(packages.StateDir))
	m1, err := os.ReadFile(filepath.Join(state, "hello.json"))
	if err != nil {
		t.Fatal(err)
	}
	e := &patchEnv{t: t, root: root, pkgs: pkgs, m: New(logging.Discard())}
	p2, _ := plugintest.Sample(t, "hello-2.0.0.tar.gz")
	if _, err := e.apply(wire.State_STATE_PRESENT, p2); err != nil {
		t.Fatal(err)
	}
	m2, err := os.ReadFile(filepath.Join(state, "hello.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The state the kill leaves: 2.0.0's files in place, the journal of
	// the install, the manifest of 1.0.0.
	j := []byte(`{"format":1,"op":"install","old":` + string(m1) + `,"new":` + string(m2) + `}`)
	if err := os.WriteFile(filepath.Join(state, "hello.journal"), j, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "hello.json"), m1, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.apply(wire.State_STATE_ABSENT, ""); err != nil {
		t.Fatal(err)
	}
	// Whatever the package plugin does next (any apply finishes what was
	// interrupted first), 1.0.0 it is.
	if err := pkgs.Recover(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	e.wantVersion("1.0.0")
	if b, _ := os.ReadFile(filepath.Join(root, "opt", "hello", "bin", "hello")); !strings.Contains(string(b), "hello 1.0.0") {
		t.Fatalf("bin/hello after the rollback = %q", b)
	}
}
