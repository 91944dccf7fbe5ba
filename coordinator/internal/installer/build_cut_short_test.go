package installer

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// `outpost installer build` writes straight into --out: the
// binaries, agent.yaml (with the token), install.sh, and last the .deb
// with os.WriteFile under its final name (buildDeb). A build cut short
// while the .deb is written (a SIGKILL, Ctrl-\, a power cut, or as here
// the disk/quota running out) leaves a directory that looks like a
// finished installer: every file of it, and a .deb under the final name
// that is truncated. The admin hands it out; `apt install ./outpost-agent_*.deb`
// fails on every computer (or, after a power cut, any file may be empty:
// nothing is synced). A retry is refused ("not empty") until a human
// clears the directory.
// (The crash review found it so.) Build now builds in a temporary
// directory next to --out, syncs it, and renames it into place once
// complete, so that --out is either absent or complete, and a retry runs.
func TestBuildCutShortLeavesNothingAndMayRunAgain(t *testing.T) {
	cfg := testConfig(t)
	// A plugin of 1 MiB of random bytes: the .deb (which packs it) is
	// larger than any one file the build copies.
	big := make([]byte, 1<<20)
	rand.Read(big)
	if err := os.WriteFile(filepath.Join(cfg.BinDir, "outpost-plugin-big"), big, 0o755); err != nil {
		t.Fatal(err)
	}
	// The disk takes every copied file but not the whole .deb: the write
	// stops part way, as a kill during it would (Go ignores SIGXFSZ; the
	// write returns EFBIG after a partial write).
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = 1<<20 + 8<<10
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skip("cannot limit the file size:", err)
	}
	_, buildErr := Build(cfg)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if buildErr == nil {
		t.Fatal("the build was not cut short; the test's limit is wrong")
	}
	t.Logf("build cut short: %v", buildErr)

	debs, _ := filepath.Glob(filepath.Join(cfg.OutDir, "*.deb"))
	_, shErr := os.Stat(filepath.Join(cfg.OutDir, "install.sh"))
	for _, d := range debs {
		fi, _ := os.Stat(d)
		why := "it is not a complete package"
		if _, err := exec.LookPath("dpkg-deb"); err == nil {
			out, err := exec.Command("dpkg-deb", "--contents", d).CombinedOutput()
			if err == nil {
				continue
			}
			why = "dpkg-deb --contents: " + lastLine(string(out))
		}
		t.Fatalf("a build cut short left %s (%d bytes) under its final name next to install.sh (present: %v): %s",
			filepath.Base(d), fi.Size(), shErr == nil, why)
	}
	if _, err := os.Stat(cfg.OutDir); !os.IsNotExist(err) {
		t.Fatalf("a build cut short left %s: %v", cfg.OutDir, err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(cfg.OutDir), ".*.partial-*")); len(left) > 0 {
		t.Fatalf("a build cut short left %v", left)
	}
	res, err := Build(cfg)
	if err != nil {
		t.Fatalf("the build again: %v", err)
	}
	if _, err := os.Stat(res.Deb); err != nil || res.Dir != cfg.OutDir {
		t.Fatalf("the build again: %+v %v", res, err)
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
