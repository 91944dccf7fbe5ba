//go:build linux

package packages

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/outposthq/outpost/pkg/wire"
)

// dpkgSystem is a throw-away system directory that Debian's real dpkg
// installs into: two one-line wrappers (--root, --admindir) stand in for
// the host's dpkg and dpkg-query, so a Manager made with WithDpkgDir(bin)
// believes it acts on the whole system ("/") and never touches the host's
// package database.
type dpkgSystem struct {
	t   testing.TB
	sys string // the system directory dpkg installs into
	bin string // the wrappers
}

// newDpkgSystem skips the test where Debian's dpkg is not installed or the
// test does not run as root (dpkg --root needs it).
func newDpkgSystem(t testing.TB) *dpkgSystem {
	t.Helper()
	for _, tool := range []string{"dpkg", "dpkg-query", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: this test needs Debian's dpkg", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("dpkg --root needs root")
	}
	d := &dpkgSystem{t: t, sys: t.TempDir(), bin: t.TempDir()}
	for _, dir := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		if err := os.MkdirAll(filepath.Join(d.sys, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d.sys, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dpkg, _ := exec.LookPath("dpkg")
	query, _ := exec.LookPath("dpkg-query")
	for name, body := range map[string]string{
		"dpkg":       `exec ` + dpkg + ` --root=` + d.sys + ` "$@"`,
		"dpkg-query": `exec ` + query + ` --admindir=` + d.sys + `/var/lib/dpkg "$@"`,
	} {
		if err := os.WriteFile(filepath.Join(d.bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// withPrograms copies the host's programs (and the shared libraries ldd
// names for them) into the system directory at the same paths, so that
// maintainer scripts, which dpkg runs chrooted there, can use them. It
// skips the test where that cannot be done.
func (d *dpkgSystem) withPrograms(programs ...string) {
	d.t.Helper()
	copyTo := func(src, dst string) {
		b, err := os.ReadFile(src)
		if err != nil {
			d.t.Skipf("copy %s into the dpkg system: %v", src, err)
		}
		p := filepath.Join(d.sys, dst)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			d.t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o755); err != nil {
			d.t.Fatal(err)
		}
	}
	// Shells redirect a background job's input from /dev/null.
	if err := os.MkdirAll(filepath.Join(d.sys, "dev"), 0o755); err != nil {
		d.t.Fatal(err)
	}
	if err := syscall.Mknod(filepath.Join(d.sys, "dev", "null"), syscall.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		d.t.Skipf("make /dev/null in the dpkg system: %v", err)
	}
	for _, prog := range programs {
		copyTo(prog, prog)
		out, err := exec.Command("ldd", prog).Output()
		if err != nil {
			d.t.Skipf("ldd %s: %v", prog, err)
		}
		for _, field := range strings.Fields(string(out)) {
			if strings.HasPrefix(field, "/") {
				copyTo(field, field)
			}
		}
	}
}

// deb builds a .deb of package pkg at version with files (path in the
// system → content) and maintainer scripts (name → body, e.g. "postinst"),
// and returns its path.
func (d *dpkgSystem) deb(pkg, version string, files, scripts map[string]string) string {
	d.t.Helper()
	src := d.t.TempDir()
	control := "Package: " + pkg + "\nVersion: " + version + "\nArchitecture: all\nMaintainer: Outpost tests <tests@outpost.invalid>\nDescription: a test package\n"
	write := func(rel, body string, mode os.FileMode) {
		p := filepath.Join(src, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			d.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			d.t.Fatal(err)
		}
	}
	write("DEBIAN/control", control, 0o644)
	for rel, body := range files {
		write(rel, body, 0o644)
	}
	for name, body := range scripts {
		write("DEBIAN/"+name, body, 0o755)
	}
	out := filepath.Join(d.t.TempDir(), pkg+"_"+version+"_all.deb")
	if b, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", src, out).CombinedOutput(); err != nil {
		d.t.Fatalf("dpkg-deb: %v: %s", err, b)
	}
	return out
}

// version is the version of pkg dpkg has installed, or "".
func (d *dpkgSystem) version(pkg string) string {
	d.t.Helper()
	out, err := exec.Command(filepath.Join(d.bin, "dpkg-query"), "-W", "-f", "${db:Status-Status} ${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	status, version, _ := strings.Cut(string(out), " ")
	if status != "installed" {
		return ""
	}
	return version
}

// debPkgItem is a package item for pkg whose artifact is a .deb.
func debPkgItem(pkg, version string, state wire.State) *wire.Item {
	return pkgItem(pkg, version, "", state, &wire.Artifact{Sha256: strings.Repeat("ab", 32), Name: pkg + "_" + version + "_all.deb"})
}
