package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A trial counts the starts of the version on trial; the start after the
// last one allowed puts the previous version back, refuses the new file
// for good, and says so; a stop on purpose does not count; a trial of
// another file than the one running is dropped.
func TestUpgradeTrialRollsBackAfterRepeatedStops(t *testing.T) {
	data := t.TempDir()
	bin := t.TempDir()
	exe := filepath.Join(bin, "outpost-agent")
	write := func(p, body string) {
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(exe, "version 2")
	old := filepath.Join(bin, "running-image")
	write(old, "version 1")
	if err := PrepareTrial(data, exe, old, "1.0.0", "2.0.0"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= trialStarts; i++ {
		tr, back, err := BeginTrial(data, exe)
		if err != nil || back != "" || tr == nil || tr.t.Starts != i {
			t.Fatalf("start %d: %+v %q %v", i, tr, back, err)
		}
		if i == 2 {
			tr.Stopped() // systemctl stop: not a failure
			if tr2, _, _ := BeginTrial(data, exe); tr2 == nil || tr2.t.Starts != 2 {
				t.Fatalf("a stop on purpose counted: %+v", tr2)
			}
		}
	}
	_, back, err := BeginTrial(data, exe)
	if err != nil || back != exe {
		t.Fatalf("the start after %d: back %q, %v", trialStarts, back, err)
	}
	if b, _ := os.ReadFile(exe); string(b) != "version 1" {
		t.Fatalf("after the rollback %s holds %q", exe, b)
	}
	badSum := func() string {
		p := filepath.Join(t.TempDir(), "bad")
		write(p, "version 2")
		s, _ := fileSHA256(p)
		return s
	}()
	if why, ok := refusedFor(data, badSum); !ok || !strings.Contains(why, "version 2.0.0 stopped 3 times before its upgrade was kept") {
		t.Fatalf("the rolled-back file is not refused: %q %v", why, ok)
	}
	if why := rolledBackTo(data, "1.0.0"); !strings.Contains(why, "rolled back to 1.0.0") {
		t.Fatalf("the version rolled back to does not say why it runs: %q", why)
	}
	if why := rolledBackTo(data, "3.0.0"); why != "" {
		t.Fatalf("another version says it was rolled back to: %q", why)
	}
	if _, err := os.Stat(filepath.Join(upgradeDir(data), "trial.json")); !os.IsNotExist(err) {
		t.Errorf("the trial is left after the rollback: %v", err)
	}
	// The copy stays while the version rolled back to runs: the refused
	// file may come back.
	if _, err := os.Stat(filepath.Join(upgradeDir(data), "previous")); err != nil {
		t.Errorf("the copy of the version rolled back to is gone: %v", err)
	}
	if tr, back, err := BeginTrial(data, exe); tr != nil || back != "" || err != nil {
		t.Fatalf("a start after the rollback: %+v %q %v", tr, back, err)
	}

	// A trial of a file that no longer runs (replaced by hand since) is
	// dropped.
	write(exe, "version 3")
	if err := PrepareTrial(data, exe, old, "1.0.0", "3.0.0"); err != nil {
		t.Fatal(err)
	}
	write(exe, "version 4")
	if tr, back, err := BeginTrial(data, exe); tr != nil || back != "" || err != nil {
		t.Fatalf("a trial of another file: %+v %q %v", tr, back, err)
	}
	if _, err := os.Stat(filepath.Join(upgradeDir(data), "trial.json")); !os.IsNotExist(err) {
		t.Fatalf("the stale trial is kept: %v", err)
	}
	// A damaged trial is dropped too, not a reason to stop.
	if err := os.WriteFile(filepath.Join(upgradeDir(data), "trial.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tr, back, err := BeginTrial(data, exe); tr != nil || back != "" || err != nil {
		t.Fatalf("a damaged trial: %+v %q %v", tr, back, err)
	}
}
