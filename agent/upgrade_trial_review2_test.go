package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// review2Setup lays out an executable at bin/outpost-agent holding body
// "version 2" after an upgrade from "version 1", with the trial prepared as
// cmd/outpost-agent does right before its exec.
func review2Setup(t *testing.T) (data, exe, old string, badSum string) {
	t.Helper()
	data, bin := t.TempDir(), t.TempDir()
	exe = filepath.Join(bin, "outpost-agent")
	old = filepath.Join(bin, "running-image")
	if err := os.WriteFile(old, []byte("version 1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, []byte("version 2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := PrepareTrial(data, exe, old, "1.0.0", "2.0.0"); err != nil {
		t.Fatal(err)
	}
	badSum, _ = fileSHA256(exe)
	return data, exe, old, badSum
}

// crashes counts trialStarts starts of the version on trial, each ended by
// a crash (nothing undoes its count).
func review2Crashes(t *testing.T, data, exe string) {
	t.Helper()
	for i := 1; i <= trialStarts; i++ {
		if tr, back, err := BeginTrial(data, exe); tr == nil || back != "" || err != nil {
			t.Fatalf("start %d: %+v %q %v", i, tr, back, err)
		}
	}
}

// After a rollback the package puts the refused file back at the path
// (README: "even when its package puts it back at every run"). The next
// start of the agent (a reboot, systemctl restart, one crash of the old
// version) runs the file at the path: the refused one. Its start must not
// run it unprotected: BeginTrial finds no trial (ended by the rollback)
// and no copy of the old version (deleted by the rollback), and never
// consults refused.json, so the refused version runs, crashes, and is
// started again forever with nothing left to roll back to.
func TestARefusedFileFoundRunningIsReplacedByTheVersionRolledBackTo(t *testing.T) {
	data, exe, _, badSum := review2Setup(t)
	review2Crashes(t, data, exe)
	if _, back, err := BeginTrial(data, exe); err != nil || back != exe {
		t.Fatalf("no rollback: %q %v", back, err)
	}
	if _, ok := refusedFor(data, badSum); !ok {
		t.Fatal("the rolled-back file is not refused")
	}
	// The package item: the file differs from its manifest, put back.
	if err := os.WriteFile(exe+".new", []byte("version 2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(exe+".new", exe); err != nil {
		t.Fatal(err)
	}
	// The service manager starts the agent again: the refused file.
	tr, back, err := BeginTrial(data, exe)
	b, _ := os.ReadFile(exe)
	_, kept := os.Stat(filepath.Join(upgradeDir(data), "previous"))
	if back == "" && string(b) == "version 2" {
		t.Fatalf("a start of the refused file (SHA-256 in refused.json) runs it: trial %+v, rollback %q, err %v; a copy of the old version kept: %v",
			tr, back, err, kept == nil)
	}
}

// rollBack puts the old file back first, then records the refusal, and
// says "a crash part way leaves the trial, and the next start rolls back
// again". But the next start runs the file at the path, which is the old
// version now: BeginTrial sees a running image whose SHA-256 is not the
// trial's, drops the trial, and the refusal is never recorded. Here the
// refusal's write fails (refused.json cannot be replaced), as a kill
// between the two writes would leave it.
func TestARollbackCutShortIsFinishedAtTheNextStart(t *testing.T) {
	data, exe, _, badSum := review2Setup(t)
	review2Crashes(t, data, exe)
	blocker := filepath.Join(upgradeDir(data), "refused.json")
	if err := os.MkdirAll(filepath.Join(blocker, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := BeginTrial(data, exe); err == nil {
		t.Fatal("the refusal's write did not fail")
	}
	os.RemoveAll(blocker) // the disk is fine again; the agent starts again
	// The next start, of whichever file is at the path, finishes the
	// rollback.
	if _, back, err := BeginTrial(data, exe); err != nil || back != exe {
		t.Fatalf("the next start: %q %v", back, err)
	}
	if b, _ := os.ReadFile(exe); string(b) != "version 1" {
		t.Fatalf("the old file is not back: %q", b)
	}
	if _, ok := refusedFor(data, badSum); !ok {
		_, terr := os.Stat(filepath.Join(upgradeDir(data), "trial.json"))
		t.Fatalf("the rollback interrupted after the old file was put back never refuses the new version (trial.json left: %v); its package puts it back and the agent restarts into it again", terr == nil)
	}
}

// A version on trial that restarts into a newer one replaces its own
// trial: "previous" becomes the version on trial, the copy of the last
// version that passed is overwritten, and a rollback from the newer one
// goes to a version that never passed its trial and is no longer on
// trial: if it crashes in turn, nothing rolls it back.
func TestNoUpgradeStartsWhileTheRunningVersionIsOnTrial(t *testing.T) {
	data, exe, _, _ := review2Setup(t) // 1 -> 2
	if tr, _, _ := BeginTrial(data, exe); tr == nil {
		t.Fatal("2.0.0 not on trial")
	}
	// 2.0.0, one start into its trial, sees 3.0.0 pass its checks and
	// restarts into it (running: its own image).
	img2 := filepath.Join(t.TempDir(), "image-2")
	if err := os.WriteFile(img2, []byte("version 2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe+".new", []byte("version 3"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Rename(exe+".new", exe)
	// The loop holds the restart until 2.0.0's trial ends; the trial's
	// own record refuses a new one meanwhile.
	if err := PrepareTrial(data, exe, img2, "2.0.0", "3.0.0"); err == nil || !strings.Contains(err.Error(), "version 2.0.0 is on trial itself") {
		t.Fatalf("a trial of 3.0.0 prepared while 2.0.0 is on trial: %v", err)
	}
	prev, _ := os.ReadFile(filepath.Join(upgradeDir(data), "previous"))
	if !bytes.Equal(prev, []byte("version 1")) {
		t.Fatalf("the copy of 1.0.0 was replaced: previous %q", prev)
	}
}

// A kill between PrepareTrial's two writes (previous written, trial.json
// not) or a damaged trial.json leaves "previous", a full copy of the agent,
// in the data directory for good: nothing removes it without a trial.
func TestTheKeptCopyGoesWithoutATrial(t *testing.T) {
	for _, damage := range []string{"missing", "damaged"} {
		data, exe, _, _ := review2Setup(t)
		tj := filepath.Join(upgradeDir(data), "trial.json")
		if damage == "missing" {
			os.Remove(tj)
		} else {
			os.WriteFile(tj, []byte("{not json"), 0o600)
		}
		if tr, back, err := BeginTrial(data, exe); tr != nil || back != "" || err != nil {
			t.Fatalf("%s: %+v %q %v", damage, tr, back, err)
		}
		if _, err := os.Stat(filepath.Join(upgradeDir(data), "previous")); err == nil {
			t.Errorf("trial.json %s: the copy of the old executable is kept with no trial, for good", damage)
		}
	}
}

// The agent started by a symlink that a package manager switches between
// versions (README: "a symlink switched to another version's file" is an
// upgrade). The rollback renames a regular file over the symlink: the
// link the package manager (update-alternatives, a current -> version
// switch) owns is gone, and its next switch finds a file where its link
// was.
func TestARollbackThroughASymlinkSwitchesTheLinkBack(t *testing.T) {
	data, bin := t.TempDir(), t.TempDir()
	for _, v := range []string{"1", "2"} {
		os.MkdirAll(filepath.Join(bin, v), 0o755)
		if err := os.WriteFile(filepath.Join(bin, v, "outpost-agent"), []byte("version "+v), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(bin, "outpost-agent")
	if err := os.Symlink(filepath.Join(bin, "2", "outpost-agent"), exe); err != nil {
		t.Fatal(err)
	}
	if err := PrepareTrial(data, exe, filepath.Join(bin, "1", "outpost-agent"), "1.0.0", "2.0.0"); err != nil {
		t.Fatal(err)
	}
	review2Crashes(t, data, exe)
	if _, back, err := BeginTrial(data, exe); back != exe || err != nil {
		t.Fatalf("no rollback: %q %v", back, err)
	}
	if fi, err := os.Lstat(exe); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("after the rollback %s is no longer the package manager's symlink but a %v", exe, fi.Mode().Type())
	}
}
