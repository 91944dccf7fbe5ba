package installer

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A build cut short by a kill (Ctrl-C during "outpost installer build",
// which ends the CLI before any deferred cleanup) leaves its temporary
// directory beside --out: hidden, and holding agent.yaml and the .deb
// with a live enrolment token (valid for days, for many computers). The
// admin, who retries and later deletes the installer they know of, never
// learns of it; whoever copies or serves the parent directory hands the
// token on. Build now removes what an earlier build of the same --out
// left, once it is older than any build takes; a build under way beside
// it (younger) is left alone.
func TestBuildRemovesWhatAKilledBuildLeft(t *testing.T) {
	cfg := testConfig(t)
	parent := filepath.Dir(cfg.OutDir)
	leftover := func(name string, age time.Duration) string {
		dir := filepath.Join(parent, name)
		if err := os.MkdirAll(filepath.Join(dir, "plugins"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "agent.yaml"), []byte("enroll_token: opt_leaked\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		then := time.Now().Add(-age)
		for _, p := range []string{filepath.Join(dir, "plugins"), filepath.Join(dir, "agent.yaml"), dir} {
			if err := os.Chtimes(p, then, then); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	killed := leftover(".out.partial-1234567", 2*time.Hour)
	running := leftover(".out.partial-7654321", time.Minute)
	otherOut := leftover(".elsewhere.partial-1234567", 2*time.Hour)
	if _, err := Build(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(killed); !os.IsNotExist(err) {
		t.Errorf("what a killed build left, with its token, is still there: %s (%v)", killed, err)
	}
	for _, dir := range []string{running, otherOut} {
		if _, err := os.Stat(filepath.Join(dir, "agent.yaml")); err != nil {
			t.Errorf("%s was removed: it is not an earlier build of this --out, or may be under way", dir)
		}
	}
}
