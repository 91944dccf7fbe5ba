package packages

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/proto"
)

// TestDebThroughRealDpkg drives Debian's own dpkg: real .deb files built
// with dpkg-deb, installed, upgraded, verified, refused and removed. The
// plugin believes it acts on the whole system ("/"); two one-line wrappers
// point dpkg at a throw-away system directory (--root / --admindir), so the
// test never touches the machine's own package database.
func TestDebThroughRealDpkg(t *testing.T) {
	for _, tool := range []string{"dpkg", "dpkg-query", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: this test needs Debian's dpkg", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("dpkg --root needs root")
	}
	sys := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		if err := os.MkdirAll(filepath.Join(sys, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(sys, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	wrap := func(name, body string) {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dpkg, _ := exec.LookPath("dpkg")
	query, _ := exec.LookPath("dpkg-query")
	wrap("dpkg", `exec `+dpkg+` --root=`+sys+` "$@"`)
	wrap("dpkg-query", `exec `+query+` --admindir=`+sys+`/var/lib/dpkg "$@"`)

	// conf, when not empty, is the package's /etc/outpost-hello.conf, a
	// conffile.
	debWith := func(version, payload, conf string) string {
		t.Helper()
		src := t.TempDir()
		os.MkdirAll(filepath.Join(src, "DEBIAN"), 0o755)
		os.MkdirAll(filepath.Join(src, "opt", "outpost-hello"), 0o755)
		control := "Package: outpost-hello\nVersion: " + version + "\nArchitecture: all\nMaintainer: Outpost tests <tests@outpost.invalid>\nDescription: a test package\n"
		os.WriteFile(filepath.Join(src, "DEBIAN", "control"), []byte(control), 0o644)
		os.WriteFile(filepath.Join(src, "opt", "outpost-hello", "hello"), []byte(payload), 0o644)
		if conf != "" {
			os.MkdirAll(filepath.Join(src, "etc"), 0o755)
			os.WriteFile(filepath.Join(src, "etc", "outpost-hello.conf"), []byte(conf), 0o644)
			os.WriteFile(filepath.Join(src, "DEBIAN", "conffiles"), []byte("/etc/outpost-hello.conf\n"), 0o644)
		}
		out := filepath.Join(t.TempDir(), "outpost-hello_"+version+"_all.deb")
		if b, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", src, out).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb: %v: %s", err, b)
		}
		return out
	}
	deb := func(version, payload string) string { return debWith(version, payload, "") }
	v1, v2 := deb("1.0-1", "one\n"), deb("2.0-1", "two\n")
	item := func(version string, state wire.State, path string) *wire.Item {
		return pkgItem("outpost-hello", version, "", state, &wire.Artifact{Sha256: strings.Repeat("ab", 32), Name: filepath.Base(path)})
	}
	m := New(logging.Discard(), WithDpkgDir(bin))
	ctx := context.Background()
	apply := func(it *wire.Item, path string) (*proto.ApplyResponse, error) {
		return m.Apply(ctx, &proto.ApplyRequest{Root: "/", Item: it, ArtifactPath: path})
	}
	scan := func(it *wire.Item) *proto.ItemState {
		r, err := m.Scan(ctx, &proto.ScanRequest{Root: "/", Items: []*wire.Item{it}})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetItems()[0]
	}
	installed := func() string {
		b, _ := os.ReadFile(filepath.Join(sys, "opt", "outpost-hello", "hello"))
		return string(b)
	}

	if st := scan(item("1.0-1", wire.State_STATE_PRESENT, v1)); st.GetCompliant() || st.GetMessage() != "outpost-hello is not installed (dpkg)" {
		t.Fatalf("scan before: %v", st)
	}
	if r, err := apply(item("1.0-1", wire.State_STATE_PRESENT, v1), v1); err != nil || r.GetMessage() != "installed outpost-hello 1.0-1 with dpkg" || installed() != "one\n" {
		t.Fatalf("install: %v, %v, file %q", r, err, installed())
	}
	if st := scan(item("1.0-1", wire.State_STATE_PRESENT, v1)); !st.GetCompliant() {
		t.Fatalf("scan after install: %v", st)
	}
	// An upgrade through dpkg replaces the files.
	if r, err := apply(item("2.0-1", wire.State_STATE_PRESENT, v2), v2); err != nil || r.GetMessage() != "replaced outpost-hello 1.0-1 with 2.0-1 (dpkg)" || installed() != "two\n" {
		t.Fatalf("upgrade: %v, %v, file %q", r, err, installed())
	}
	// A .deb that does not hold the version the policy names is refused
	// before dpkg installs it.
	if _, err := apply(item("3.0-1", wire.State_STATE_PRESENT, v1), v1); err == nil || !strings.Contains(err.Error(), "the .deb holds outpost-hello 1.0-1, not outpost-hello 3.0-1") || installed() != "two\n" {
		t.Fatalf("wrong version: %v, file %q", err, installed())
	}
	// A file that is no .deb: dpkg's own reason comes back.
	junk := filepath.Join(t.TempDir(), "junk.deb")
	os.WriteFile(junk, []byte("not an archive"), 0o644)
	if _, err := apply(item("4.0-1", wire.State_STATE_PRESENT, junk), junk); err == nil || !strings.Contains(err.Error(), "--field "+junk+" Package Version failed") {
		t.Fatalf("junk .deb: %v", err)
	}
	// A configuration file changed on the host survives an upgrade that
	// brings another: nobody is there to answer dpkg's question (the
	// agent's own agent.yaml is such a file).
	conf := func() string {
		b, _ := os.ReadFile(filepath.Join(sys, "etc", "outpost-hello.conf"))
		return string(b)
	}
	v5, v6 := debWith("5.0-1", "five\n", "setting = packaged\n"), debWith("6.0-1", "six\n", "setting = packaged again\n")
	if _, err := apply(item("5.0-1", wire.State_STATE_PRESENT, v5), v5); err != nil || conf() != "setting = packaged\n" {
		t.Fatalf("install with a conffile: %v, conffile %q", err, conf())
	}
	if err := os.WriteFile(filepath.Join(sys, "etc", "outpost-hello.conf"), []byte("setting = the host's own\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r, err := apply(item("6.0-1", wire.State_STATE_PRESENT, v6), v6); err != nil || installed() != "six\n" || conf() != "setting = the host's own\n" {
		t.Fatalf("upgrade over a changed conffile: %v, %v, file %q, conffile %q", r, err, installed(), conf())
	}
	if r, err := apply(item("", wire.State_STATE_ABSENT, v1), ""); err != nil || !strings.HasPrefix(r.GetMessage(), "removed outpost-hello") {
		t.Fatalf("remove: %v, %v", r, err)
	}
	if installed() != "" {
		t.Fatal("dpkg --remove left the package's file")
	}
	if st := scan(item("", wire.State_STATE_ABSENT, v1)); !st.GetCompliant() {
		t.Fatalf("scan after remove: %v", st)
	}
}
