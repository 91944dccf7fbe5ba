// Package plugintest builds plugin binaries for tests, so that tests run
// plugins as the real subprocesses the agent runs. It is imported only from
// tests.
package plugintest

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// Build compiles the main package pkg (an import path inside this module,
// e.g. "github.com/outposthq/outpost/plugins/packages/cmd/outpost-plugin-package")
// into a fresh temporary directory and returns the binary's path.
func Build(tb testing.TB, pkg string) string {
	tb.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	out := filepath.Join(tb.TempDir(), path.Base(pkg))
	if runtime.GOOS == "windows" {
		out += ".exe"
	}
	cmd := exec.Command(goBin, "build", "-o", out, pkg)
	cmd.Dir = testutil.RepoRoot(tb)
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// Sample is a package archive of testdata/packages, by name: its path and
// the artifact a policy item names it by.
func Sample(tb testing.TB, name string) (string, *wire.Artifact) {
	tb.Helper()
	p := filepath.Join(testutil.RepoRoot(tb), "testdata", "packages", name)
	b, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return p, &wire.Artifact{Sha256: hex.EncodeToString(sum[:]), Size: int64(len(b)), Name: name}
}
