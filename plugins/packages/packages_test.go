package packages

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/proto"
)

func TestDescribe(t *testing.T) {
	d, err := New(logging.Discard()).Describe(context.Background(), &proto.DescribeRequest{})
	if err != nil || d.GetKind() != "package" || d.GetVersion() == "" || len(d.GetCapabilities()) == 0 {
		t.Fatalf("Describe = %v, %v; want kind package, a version and capabilities", d, err)
	}
}

func TestInstall(t *testing.T) {
	e := newEnv(t)
	resp := e.mustInstall("hello", "1.0.0", hello1...)
	if !resp.GetChanged() || !strings.Contains(resp.GetMessage(), "installed hello 1.0.0") {
		t.Fatalf("first install = %v, want changed and installed hello 1.0.0", resp)
	}
	want := []string{
		"opt/",
		"opt/hello/",
		"opt/hello/bin/",
		"opt/hello/bin/hello=#!/bin/sh\necho hello 1.0.0\n",
		"opt/hello/bin/hi->hello",
		"opt/hello/share/",
		"opt/hello/share/doc/",
		"opt/hello/share/doc/hello/",
		"opt/hello/share/doc/hello/README=hello\n",
		"opt/hello/share/hello/",
		"opt/hello/share/hello/motd=welcome\n",
	}
	if got := e.tree(false); !equal(got, want) {
		t.Fatalf("tree after install:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	fi, err := os.Stat(filepath.Join(e.root, "opt/hello/bin/hello"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("bin/hello mode = %v, %v; want 0755", fi.Mode(), err)
	}

	b, err := os.ReadFile(filepath.Join(e.root, StateDir, "hello.json"))
	if err != nil {
		t.Fatalf("manifest: %v", err)
	}
	var mf Manifest
	if err := json.Unmarshal(b, &mf); err != nil {
		t.Fatal(err)
	}
	if mf.Name != "hello" || mf.Version != "1.0.0" || mf.Prefix != "/opt/hello" || len(mf.ArtifactSHA256) != 64 || mf.InstalledAt.IsZero() {
		t.Errorf("manifest header = %+v", mf)
	}
	var paths []string
	for _, f := range mf.Files {
		paths = append(paths, f.Path)
	}
	wantPaths := []string{"opt/hello/bin/hello", "opt/hello/bin/hi", "opt/hello/share/doc/hello/README", "opt/hello/share/hello/motd"}
	if !equal(paths, wantPaths) {
		t.Errorf("manifest files %v, want %v", paths, wantPaths)
	}
	wantDirs := []string{"opt", "opt/hello", "opt/hello/bin", "opt/hello/share", "opt/hello/share/doc", "opt/hello/share/doc/hello", "opt/hello/share/hello"}
	if !equal(mf.Dirs, wantDirs) {
		t.Errorf("manifest dirs %v, want %v", mf.Dirs, wantDirs)
	}
	if !strings.Contains(string(b), `"mode": "0755"`) {
		t.Errorf("manifest does not show modes in octal:\n%s", b)
	}

	st := e.scan(pkgItem("hello", "1.0.0", "", wire.State_STATE_PRESENT, nil))
	if !st.GetCompliant() || st.GetInstalledVersion() != "1.0.0" || !st.GetApplicable() {
		t.Fatalf("scan after install = %v, want compliant 1.0.0", st)
	}

	t.Run("idempotent", func(t *testing.T) {
		before := e.tree(true)
		resp := e.mustInstall("hello", "1.0.0", hello1...)
		if resp.GetChanged() {
			t.Fatalf("second install = %v, want unchanged", resp)
		}
		if after := e.tree(true); !equal(before, after) {
			t.Fatalf("second install changed the disk:\n%v\n%v", before, after)
		}
	})
}

func TestUpgradeAndDowngrade(t *testing.T) {
	e := newEnv(t)
	e.mustInstall("hello", "1.0.0", hello1...)
	steps := []struct {
		version  string
		entries  []ent
		want     []string
		wantMsg  string
		wantGone []string
	}{
		{
			version: "2.0.0", entries: hello2, wantMsg: "replaced hello 1.0.0 with 2.0.0",
			want: []string{
				"opt/", "opt/hello/", "opt/hello/bin/",
				"opt/hello/bin/hello=#!/bin/sh\necho hello 2.0.0\n",
				"opt/hello/bin/hi->hello",
				"opt/hello/share/", "opt/hello/share/doc/", "opt/hello/share/doc/hello/",
				"opt/hello/share/doc/hello/NEWS=2.0.0: motd is gone\n",
				"opt/hello/share/doc/hello/README=hello, again\n",
			},
		},
		{
			version: "1.0.0", entries: hello1, wantMsg: "replaced hello 2.0.0 with 1.0.0",
			want: []string{
				"opt/", "opt/hello/", "opt/hello/bin/",
				"opt/hello/bin/hello=#!/bin/sh\necho hello 1.0.0\n",
				"opt/hello/bin/hi->hello",
				"opt/hello/share/", "opt/hello/share/doc/", "opt/hello/share/doc/hello/",
				"opt/hello/share/doc/hello/README=hello\n",
				"opt/hello/share/hello/", "opt/hello/share/hello/motd=welcome\n",
			},
		},
	}
	for _, step := range steps {
		t.Run("to "+step.version, func(t *testing.T) {
			resp := e.mustInstall("hello", step.version, step.entries...)
			if !resp.GetChanged() || resp.GetMessage() != step.wantMsg {
				t.Fatalf("apply = %v, want changed, %q", resp, step.wantMsg)
			}
			if got := e.tree(false); !equal(got, step.want) {
				t.Fatalf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(step.want, "\n"))
			}
			st := e.scan(pkgItem("hello", step.version, "", wire.State_STATE_PRESENT, nil))
			if !st.GetCompliant() {
				t.Fatalf("scan = %v, want compliant", st)
			}
			mf, err := store{root: e.root}.load("hello")
			if err != nil || mf.Version != step.version {
				t.Fatalf("manifest = %+v, %v", mf, err)
			}
			// Removal must still clean up everything, including directories
			// created by an earlier version.
			for _, d := range mf.Dirs {
				if !e.exists(d) {
					t.Errorf("manifest lists directory %s, which does not exist", d)
				}
			}
		})
	}
	if _, err := e.remove("hello"); err != nil {
		t.Fatal(err)
	}
	if got := e.tree(false); len(got) != 0 {
		t.Fatalf("after remove, left: %v", got)
	}
}

func TestMovePrefix(t *testing.T) {
	e := newEnv(t)
	e.mustInstall("hello", "1.0.0", hello1...)
	p, art := e.artifact(targz(t, hello1...))
	_, err := e.m.Apply(context.Background(), &proto.ApplyRequest{
		Root: e.root, ArtifactPath: p,
		Item: pkgItem("hello", "1.0.0", "/srv/hello", wire.State_STATE_PRESENT, art),
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.exists("opt") || !e.exists("srv/hello/bin/hello") {
		t.Fatalf("after moving the prefix: %v", e.tree(false))
	}
	if _, err := e.remove("hello"); err != nil {
		t.Fatal(err)
	}
	if got := e.tree(false); len(got) != 0 {
		t.Fatalf("after remove, left: %v", got)
	}
}

func TestRemove(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(e *env)
		want    []string // what is left outside the state directory
		changed bool
	}{
		{
			name:    "everything it made",
			setup:   func(e *env) { e.mustInstall("hello", "1.0.0", hello1...) },
			changed: true,
		},
		{
			name: "a foreign file survives with its directories",
			setup: func(e *env) {
				e.mustInstall("hello", "1.0.0", hello1...)
				if err := os.WriteFile(filepath.Join(e.root, "opt/hello/bin/local"), []byte("mine"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want:    []string{"opt/", "opt/hello/", "opt/hello/bin/", "opt/hello/bin/local=mine"},
			changed: true,
		},
		{
			name: "directories it did not create stay",
			setup: func(e *env) {
				if err := os.MkdirAll(filepath.Join(e.root, "opt/hello/bin"), 0o755); err != nil {
					t.Fatal(err)
				}
				e.mustInstall("hello", "1.0.0", hello1...)
			},
			want:    []string{"opt/", "opt/hello/", "opt/hello/bin/"},
			changed: true,
		},
		{
			name:    "not installed",
			setup:   func(e *env) {},
			changed: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			tt.setup(e)
			resp, err := e.remove("hello")
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetChanged() != tt.changed {
				t.Fatalf("remove = %v, want changed=%v", resp, tt.changed)
			}
			if got := e.tree(false); !equal(got, tt.want) {
				t.Fatalf("left after remove: %v, want %v", got, tt.want)
			}
			if e.exists(StateDir + "/hello.json") {
				t.Fatal("manifest still there")
			}
			st := e.scan(pkgItem("hello", "", "", wire.State_STATE_ABSENT, nil))
			if !st.GetCompliant() {
				t.Fatalf("scan absent = %v, want compliant", st)
			}
		})
	}
}

func TestScanFindsDrift(t *testing.T) {
	tests := []struct {
		name  string
		item  *wire.Item
		drift func(t *testing.T, root string)
		want  string
	}{
		{
			name: "deleted file",
			drift: func(t *testing.T, root string) {
				must(t, os.Remove(filepath.Join(root, "opt/hello/bin/hello")))
			},
			want: "file opt/hello/bin/hello missing",
		},
		{
			name: "modified file, same size",
			drift: func(t *testing.T, root string) {
				must(t, os.WriteFile(filepath.Join(root, "opt/hello/share/doc/hello/README"), []byte("HELLO\n"), 0o644))
			},
			want: "file opt/hello/share/doc/hello/README modified (sha256",
		},
		{
			name: "modified file, other size",
			drift: func(t *testing.T, root string) {
				must(t, os.WriteFile(filepath.Join(root, "opt/hello/share/doc/hello/README"), []byte("hi"), 0o644))
			},
			want: "file opt/hello/share/doc/hello/README modified (2 bytes, want 6)",
		},
		{
			name: "mode changed",
			drift: func(t *testing.T, root string) {
				must(t, os.Chmod(filepath.Join(root, "opt/hello/bin/hello"), 0o644))
			},
			want: "file opt/hello/bin/hello has mode 0644, want 0755",
		},
		{
			name: "symlink retargeted",
			drift: func(t *testing.T, root string) {
				p := filepath.Join(root, "opt/hello/bin/hi")
				must(t, os.Remove(p))
				must(t, os.Symlink("/bin/sh", p))
			},
			want: "symlink opt/hello/bin/hi points to /bin/sh, want hello",
		},
		{
			name: "prefix gone",
			drift: func(t *testing.T, root string) {
				must(t, os.RemoveAll(filepath.Join(root, "opt/hello")))
			},
			want: "prefix /opt/hello missing",
		},
		{
			name: "other version wanted",
			item: pkgItem("hello", "2.0.0", "", wire.State_STATE_PRESENT, nil),
			want: "installed version 1.0.0, want 2.0.0",
		},
		{
			name: "other artifact wanted",
			item: pkgItem("hello", "1.0.0", "", wire.State_STATE_PRESENT, &wire.Artifact{Sha256: strings.Repeat("ab", 32)}),
			want: "installed from artifact sha256",
		},
		{
			name: "absent wanted",
			item: pkgItem("hello", "", "", wire.State_STATE_ABSENT, nil),
			want: "hello 1.0.0 is installed; want it absent",
		},
		{
			name: "not installed",
			item: pkgItem("other", "1.0.0", "", wire.State_STATE_PRESENT, nil),
			want: "other is not installed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.mustInstall("hello", "1.0.0", hello1...)
			if tt.drift != nil {
				tt.drift(t, e.root)
			}
			item := tt.item
			if item == nil {
				item = pkgItem("hello", "1.0.0", "", wire.State_STATE_PRESENT, nil)
			}
			st := e.scan(item)
			if st.GetCompliant() || !strings.Contains(st.GetMessage(), tt.want) {
				t.Fatalf("scan = %v, want non-compliant with %q", st, tt.want)
			}
			if tt.drift == nil {
				return
			}
			// Apply repairs drift.
			resp := e.mustInstall("hello", "1.0.0", hello1...)
			if !resp.GetChanged() || !strings.Contains(resp.GetMessage(), "repaired hello 1.0.0: "+tt.want) {
				t.Fatalf("apply after drift = %v, want repaired with %q", resp, tt.want)
			}
			if st := e.scan(item); !st.GetCompliant() {
				t.Fatalf("scan after repair = %v, want compliant", st)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestScanItems(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name           string
		item           *wire.Item
		wantApplicable bool
		want           string
	}{
		{"other kind", &wire.Item{Id: "r", Kind: "registry"}, false, `kind "registry" is not managed`},
		{"bad name", pkgItem("Hello", "1", "", wire.State_STATE_PRESENT, nil), true, `package name "Hello" is invalid`},
		{"bad prefix", pkgItem("hello", "1", "opt/hello", wire.State_STATE_PRESENT, nil), true, `prefix "opt/hello" is not absolute`},
		{"no spec", &wire.Item{Id: "p", Kind: Kind}, true, "has no package spec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := e.scan(tt.item)
			if st.GetCompliant() || st.GetApplicable() != tt.wantApplicable || !strings.Contains(st.GetMessage(), tt.want) {
				t.Fatalf("scan = %v, want applicable=%v and %q", st, tt.wantApplicable, tt.want)
			}
		})
	}
}

func TestItemValidation(t *testing.T) {
	tests := []struct {
		name    string
		pkg     string
		version string
		prefix  string
		want    string // "" for valid
	}{
		{"plain", "hello", "1.0.0", "", ""},
		{"all characters", "a0._+-z", "1.0.0~rc1+b2", "/srv/apps/x", ""},
		{"64 characters", strings.Repeat("a", 64), "1", "", ""},
		{"65 characters", strings.Repeat("a", 65), "1", "", "is invalid"},
		{"upper case", "Hello", "1", "", "is invalid"},
		{"leading dot", ".hello", "1", "", "is invalid"},
		{"slash", "a/b", "1", "", "is invalid"},
		{"empty", "", "1", "", "is invalid"},
		{"no version", "hello", "", "", "version is empty"},
		{"version with space", "hello", "1 0", "", "version"},
		{"relative prefix", "hello", "1", "opt/hello", "not absolute"},
		{"unclean prefix", "hello", "1", "/opt/../etc", "not clean"},
		{"trailing slash", "hello", "1", "/opt/hello/", "not clean"},
		{"root prefix", "hello", "1", "/", "whole root"},
		{"state dir", "hello", "1", "/var/lib/outpost/packages", "overlaps"},
		{"inside state dir", "hello", "1", "/var/lib/outpost/packages/x", "overlaps"},
		{"above state dir", "hello", "1", "/var", "overlaps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := itemSpec(pkgItem(tt.pkg, tt.version, tt.prefix, wire.State_STATE_PRESENT, nil))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestInstallRefusesUnsafe(t *testing.T) {
	small := Limits{MaxEntries: 10, MaxTotalSize: 100, MaxPathLen: 64, MaxNameBytes: 1 << 10}
	tests := []struct {
		name    string
		entries []ent
		raw     []byte // used instead of entries
		limits  *Limits
		want    string
	}{
		{name: "dot dot", entries: []ent{file("ok", "x"), file("../etc/passwd", "root::0:0")}, want: "archive entry ../etc/passwd escapes the prefix"},
		{name: "dot dot inside", entries: []ent{file("a/../../x", "x")}, want: "archive entry a/../../x escapes the prefix"},
		{name: "absolute", entries: []ent{file("/etc/passwd", "x")}, want: "archive entry /etc/passwd is an absolute path"},
		{name: "symlink out", entries: []ent{symlink("lib", "../../etc")}, want: "archive entry lib is a symlink to ../../etc, which escapes the prefix"},
		{name: "symlink to absolute", entries: []ent{symlink("etc", "/etc")}, want: "is a symlink to the absolute path /etc"},
		{name: "symlink out through symlink", entries: []ent{symlink("sub/up", ".."), symlink("sub/x", "up/..")}, want: "archive entry sub/x is a symlink to up/.., which escapes the prefix"},
		{name: "symlink out through chain", entries: []ent{symlink("a", "b/c"), dir("b/"), symlink("b/c", "../.."), file("d", "x")}, want: "escapes the prefix"},
		{name: "symlink loop", entries: []ent{symlink("a", "b"), symlink("b", "a")}, want: "loops"},
		{name: "write through symlink", entries: []ent{dir("d/"), symlink("lnk", "d"), file("lnk/f", "x")}, want: "archive entry lnk/f is inside lnk, which is a symlink"},
		{name: "write through symlink to outside", entries: []ent{symlink("lnk", "../.."), file("lnk/etc/passwd", "x")}, want: "lnk"},
		{name: "file under file", entries: []ent{file("f", "x"), file("f/g", "y")}, want: "archive entry f/g is inside f, which is a file"},
		{name: "hard link", entries: []ent{file("a", "x"), {name: "b", typ: '1', link: "a"}}, want: "archive entry b is a hard link to a"},
		{name: "char device", entries: []ent{{name: "null", typ: '3', mode: 0o666}}, want: "archive entry null is a device"},
		{name: "block device", entries: []ent{{name: "sda", typ: '4', mode: 0o660}}, want: "archive entry sda is a device"},
		{name: "fifo", entries: []ent{{name: "pipe", typ: '6', mode: 0o644}}, want: "archive entry pipe is a fifo"},
		{name: "setuid", entries: []ent{{name: "bin/su", typ: '0', mode: 0o4755, body: "x"}}, want: "archive entry bin/su has the setuid or setgid bit"},
		{name: "setgid", entries: []ent{{name: "bin/sg", typ: '0', mode: 0o2755, body: "x"}}, want: "setuid or setgid"},
		{name: "duplicate", entries: []ent{file("a", "x"), file("a", "y")}, want: "archive entry a appears twice"},
		{name: "backslash", entries: []ent{file(`..\x`, "x")}, want: "backslash"},
		{name: "unclean", entries: []ent{file("a//b", "x")}, want: "not a clean path"},
		{name: "reserved suffix", entries: []ent{file(".a.outpost-new", "x")}, want: "reserved"},
		{name: "replaces prefix", entries: []ent{symlink("./", "..")}, want: "would replace the prefix itself"},
		{name: "too many entries", limits: &small, entries: []ent{file("1", ""), file("2", ""), file("3", ""), file("4", ""), file("5", ""), file("6", ""), file("7", ""), file("8", ""), file("9", ""), file("10", ""), file("11", "")}, want: "archive has more than 10 entries"},
		{name: "too big", limits: &small, entries: []ent{file("a", strings.Repeat("x", 60)), file("b", strings.Repeat("x", 60))}, want: "archive entry b makes the archive expand to more than 100 bytes"},
		{name: "long name", limits: &small, entries: []ent{file(strings.Repeat("a/", 40)+"x", "x")}, want: "longer than the limit of 64"},
		{name: "long element", entries: []ent{file(strings.Repeat("a", 241), "x")}, want: "path element longer than 240 bytes"},
		{name: "not gzip", raw: []byte("this is not an archive"), want: "artifact is not a gzip'd tar"},
		{name: "gzip of garbage", raw: gz([]byte(strings.Repeat("garbage!", 200))), want: "read archive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []Option
			if tt.limits != nil {
				opts = append(opts, WithLimits(*tt.limits))
			}
			e := newEnv(t, opts...)
			// A package already installed must be untouched, too.
			e.mustInstall("other", "1", file("keep", "k"))
			before := e.tree(true)
			data := tt.raw
			if data == nil {
				data = targz(t, tt.entries...)
			}
			p, art := e.artifact(data)
			_, err := e.m.Apply(context.Background(), &proto.ApplyRequest{
				Root: e.root, ArtifactPath: p,
				Item: pkgItem("evil", "1.0.0", "", wire.State_STATE_PRESENT, art),
			})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("install error = %v, want %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "install evil 1.0.0: ") {
				t.Errorf("error %q does not say what was being done", err)
			}
			if after := e.tree(true); !equal(before, after) {
				t.Fatalf("refused install wrote something:\nbefore %v\nafter  %v", before, after)
			}
			var ae *ArchiveError
			if tt.raw == nil && !errors.As(err, &ae) {
				t.Errorf("error %v is not an *ArchiveError", err)
			}
		})
	}
}

func TestInstallRefusesConflicts(t *testing.T) {
	tests := []struct {
		name  string
		setup func(e *env)
		want  string
	}{
		{
			name: "file of another package",
			setup: func(e *env) {
				p, art := e.artifact(targz(e.t, file("bin/hello", "a")))
				_, err := e.m.Apply(context.Background(), &proto.ApplyRequest{
					Root: e.root, ArtifactPath: p,
					Item: pkgItem("other", "1", "/opt/hello", wire.State_STATE_PRESENT, art),
				})
				must(t, err)
			},
			want: "archive entry bin/hello would overwrite /opt/hello/bin/hello, which belongs to package other",
		},
		{
			name: "directory of another package",
			setup: func(e *env) {
				p, art := e.artifact(targz(e.t, file("bin/hi/x", "a")))
				_, err := e.m.Apply(context.Background(), &proto.ApplyRequest{
					Root: e.root, ArtifactPath: p,
					Item: pkgItem("other", "1", "/opt/hello", wire.State_STATE_PRESENT, art),
				})
				must(t, err)
			},
			want: "archive entry bin/hi would replace /opt/hello/bin/hi, which holds files of package other",
		},
		{
			name: "directory in the way",
			setup: func(e *env) {
				must(t, os.MkdirAll(filepath.Join(e.root, "opt/hello/bin/hello"), 0o755))
			},
			want: "/opt/hello/bin/hello is a directory; the package has a file there",
		},
		{
			name: "file in the way of a directory",
			setup: func(e *env) {
				must(t, os.MkdirAll(filepath.Join(e.root, "opt/hello"), 0o755))
				must(t, os.WriteFile(filepath.Join(e.root, "opt/hello/share"), []byte("x"), 0o644))
			},
			want: "/opt/hello/share is in the way",
		},
		{
			name: "prefix is a file",
			setup: func(e *env) {
				must(t, os.WriteFile(filepath.Join(e.root, "opt"), []byte("x"), 0o644))
			},
			want: "prefix /opt/hello: /opt is not a directory",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			tt.setup(e)
			before := e.tree(true)
			_, err := e.install("hello", "1.0.0", hello1...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("install error = %v, want %q", err, tt.want)
			}
			if after := e.tree(true); !equal(before, after) {
				t.Fatalf("refused install wrote something:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

func TestInstallChecksArtifact(t *testing.T) {
	e := newEnv(t)
	data := targz(t, hello1...)
	p, art := e.artifact(data)
	tests := []struct {
		name string
		art  *wire.Artifact
		path string
		want string
	}{
		{"wrong sha256", &wire.Artifact{Sha256: strings.Repeat("0", 64)}, p, "has sha256 " + art.GetSha256() + ", want 0000"},
		{"wrong size", &wire.Artifact{Sha256: art.GetSha256(), Size: 3}, p, "bytes, want 3"},
		{"bad sha256", &wire.Artifact{Sha256: "xyz"}, p, "is not 64 hex digits"},
		{"no path", art, "", "no artifact_path given"},
		{"missing file", art, filepath.Join(e.arts, "nope"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.m.Apply(context.Background(), &proto.ApplyRequest{
				Root: e.root, ArtifactPath: tt.path,
				Item: pkgItem("hello", "1.0.0", "", wire.State_STATE_PRESENT, tt.art),
			})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
			if got := e.tree(true); len(got) != 0 {
				t.Fatalf("refused install wrote %v", got)
			}
		})
	}
	t.Run("no sha256 given: hashed from the file", func(t *testing.T) {
		_, err := e.m.Apply(context.Background(), &proto.ApplyRequest{
			Root: e.root, ArtifactPath: p,
			Item: pkgItem("hello", "1.0.0", "", wire.State_STATE_PRESENT, nil),
		})
		must(t, err)
		mf, err := store{root: e.root}.load("hello")
		if err != nil || mf.ArtifactSHA256 != art.GetSha256() {
			t.Fatalf("manifest sha256 = %v, %v; want %s", mf, err, art.GetSha256())
		}
	})
}

func TestApplyRefusesBadRequests(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name string
		req  *proto.ApplyRequest
		want string
	}{
		{"relative root", &proto.ApplyRequest{Root: "root", Item: pkgItem("a", "1", "", wire.State_STATE_PRESENT, nil)}, "is not an absolute path"},
		{"missing root", &proto.ApplyRequest{Root: filepath.Join(e.root, "nope"), Item: pkgItem("a", "1", "", wire.State_STATE_PRESENT, nil)}, "no such file"},
		{"no item", &proto.ApplyRequest{Root: e.root}, "no item given"},
		{"other kind", &proto.ApplyRequest{Root: e.root, Item: &wire.Item{Id: "x", Kind: "patch"}}, `this plugin manages "package"`},
		{"no state", &proto.ApplyRequest{Root: e.root, Item: pkgItem("a", "1", "", wire.State_STATE_UNSPECIFIED, nil)}, "want PRESENT or ABSENT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := e.m.Apply(context.Background(), tt.req); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

// crash stands in for the plugin process dying at a point of an install.
type crash struct{}

// installCrashing runs an install that "crashes" at the n-th hook call of
// the given point, leaving the disk as a killed process would.
func installCrashing(t *testing.T, e *env, point string, n int, version string, entries []ent) {
	t.Helper()
	calls := 0
	e.m.hook = func(p, _ string) error {
		if p == point {
			calls++
			if calls == n {
				panic(crash{})
			}
		}
		return nil
	}
	defer func() {
		e.m.hook = nil
		if r := recover(); r != (crash{}) {
			t.Fatalf("install did not crash at %s #%d (recovered %v)", point, n, r)
		}
		// A new process starts with a new Manager.
		e.m = New(e.m.logger)
	}()
	e.install("hello", version, entries...)
}

func TestInterruptedInstall(t *testing.T) {
	hello1Tree := func(e *env) []string {
		e2 := newEnv(t)
		e2.mustInstall("hello", "1.0.0", hello1...)
		return e2.tree(false)
	}
	tests := []struct {
		name string
		// before the crash
		preinstall bool
		point      string
		n          int
		// after
		next        func(e *env) *proto.ApplyResponse
		wantChanged bool
		wantTree    func(e *env) []string
	}{
		{
			name: "first install cut short, then retried", point: "file", n: 2,
			next:        func(e *env) *proto.ApplyResponse { return e.mustInstall("hello", "2.0.0", hello2...) },
			wantChanged: true,
			wantTree: func(e *env) []string {
				e2 := newEnv(t)
				e2.mustInstall("hello", "2.0.0", hello2...)
				return e2.tree(false)
			},
		},
		{
			name: "upgrade cut short, then removed", preinstall: true, point: "file", n: 2,
			next: func(e *env) *proto.ApplyResponse {
				resp, err := e.remove("hello")
				must(t, err)
				return resp
			},
			wantChanged: true,
			wantTree:    func(*env) []string { return nil },
		},
		{
			name: "upgrade cut short before the commit, then re-applied", preinstall: true, point: "commit", n: 1,
			// The journal shows every file in place: the install is
			// finished by recovery, so the re-apply has nothing to do.
			next:        func(e *env) *proto.ApplyResponse { return e.mustInstall("hello", "2.0.0", hello2...) },
			wantChanged: false,
			wantTree: func(e *env) []string {
				e2 := newEnv(t)
				e2.mustInstall("hello", "2.0.0", hello2...)
				return e2.tree(false)
			},
		},
		{
			name: "upgrade cut short, then rolled back to the old version", preinstall: true, point: "file", n: 1,
			next:        func(e *env) *proto.ApplyResponse { return e.mustInstall("hello", "1.0.0", hello1...) },
			wantChanged: true, // bin/hello was already overwritten: a repair
			wantTree:    hello1Tree,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if tt.preinstall {
				e.mustInstall("hello", "1.0.0", hello1...)
			}
			installCrashing(t, e, tt.point, tt.n, "2.0.0", hello2)
			if !e.exists(StateDir + "/hello.journal") {
				t.Fatal("no journal after a crash")
			}
			st := e.scan(pkgItem("hello", "2.0.0", "", wire.State_STATE_PRESENT, nil))
			if st.GetCompliant() || !strings.Contains(st.GetMessage(), "an interrupted change to hello is pending") {
				t.Fatalf("scan after crash = %v, want the pending change reported", st)
			}
			resp := tt.next(e)
			if resp.GetChanged() != tt.wantChanged {
				t.Fatalf("apply after crash = %v, want changed=%v", resp, tt.wantChanged)
			}
			if got, want := e.tree(false), tt.wantTree(e); !equal(got, want) {
				t.Fatalf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if e.exists(StateDir + "/hello.journal") {
				t.Fatal("journal left behind")
			}
			for _, p := range e.tree(true) {
				if strings.Contains(p, tempSuffix) {
					t.Fatalf("temporary file left behind: %s", p)
				}
			}
		})
	}
}

func TestFailedInstallIsUndone(t *testing.T) {
	e := newEnv(t)
	e.m.hook = func(point, p string) error {
		if point == "file" && p == "share/doc/hello/NEWS" {
			return errors.New("disk full")
		}
		return nil
	}
	_, err := e.install("hello", "2.0.0", hello2...)
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("install = %v, want the disk full error", err)
	}
	if got := e.tree(false); len(got) != 0 {
		t.Fatalf("failed first install left %v", got)
	}
	if e.exists(StateDir+"/hello.journal") || e.exists(StateDir+"/hello.json") {
		t.Fatal("failed first install left a journal or manifest")
	}
}

func TestInterruptedRemove(t *testing.T) {
	e := newEnv(t)
	e.mustInstall("hello", "1.0.0", hello1...)
	mf, err := store{root: e.root}.load("hello")
	must(t, err)
	// A removal that died after writing its journal and one removal.
	must(t, store{root: e.root}.saveJournal("hello", &journal{Op: opRemove, Old: mf}))
	must(t, os.Remove(filepath.Join(e.root, "opt/hello/bin/hello")))

	e.m = New(e.m.logger)
	resp := e.mustInstall("other", "1", file("x", "x"))
	if !resp.GetChanged() {
		t.Fatal("unrelated install did nothing")
	}
	if e.exists("opt/hello") || e.exists(StateDir+"/hello.json") || e.exists(StateDir+"/hello.journal") {
		t.Fatalf("interrupted removal not finished: %v", e.tree(true))
	}
}

func TestCorruptManifestIsRefused(t *testing.T) {
	tests := []struct {
		name     string
		manifest string
		want     string
	}{
		{"not json", "{", "is unreadable"},
		{"other name", `{"format":1,"name":"evil","version":"1","prefix":"/opt/hello"}`, `names package "evil"`},
		{"file outside prefix", `{"format":1,"name":"hello","version":"1","prefix":"/opt/hello","files":[{"path":"etc/passwd","size":1,"mode":"0644"}]}`, "is not inside the prefix"},
		{"file escaping prefix", `{"format":1,"name":"hello","version":"1","prefix":"/opt/hello","files":[{"path":"opt/hello/../../etc/passwd","size":1,"mode":"0644"}]}`, "is not inside the prefix"},
		{"dir elsewhere", `{"format":1,"name":"hello","version":"1","prefix":"/opt/hello","dirs":["etc"]}`, "neither inside nor above"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			p := filepath.Join(e.root, StateDir, "hello.json")
			must(t, os.MkdirAll(filepath.Dir(p), 0o700))
			must(t, os.WriteFile(p, []byte(tt.manifest), 0o644))
			must(t, os.MkdirAll(filepath.Join(e.root, "etc"), 0o755))
			must(t, os.WriteFile(filepath.Join(e.root, "etc/passwd"), []byte("x"), 0o644))
			_, err := e.remove("hello")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("remove with a corrupt manifest = %v, want %q", err, tt.want)
			}
			if !e.exists("etc/passwd") {
				t.Fatal("removed a file outside the prefix")
			}
		})
	}
}

func TestFilesBeyondPermissions(t *testing.T) {
	e := newEnv(t)
	e.mustInstall("ro", "1", ent{name: "d/", typ: '5', mode: 0o555}, ent{name: "d/f", typ: '0', mode: 0o400, body: "x"})
	fi, err := os.Stat(filepath.Join(e.root, "opt/ro/d"))
	must(t, err)
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("directory mode %v, want 0755 (owner access added)", fi.Mode().Perm())
	}
	if _, err := e.remove("ro"); err != nil {
		t.Fatal(err)
	}
	if got := e.tree(false); len(got) != 0 {
		t.Fatalf("left after remove: %v", got)
	}
}

func TestUndoKeepsFilesItDidNotWrite(t *testing.T) {
	e := newEnv(t)
	// A file the install would overwrite later, had it not crashed first.
	news := filepath.Join(e.root, "opt/hello/share/doc/hello/NEWS")
	must(t, os.MkdirAll(filepath.Dir(news), 0o755))
	must(t, os.WriteFile(news, []byte("the admin's own notes\n"), 0o644))
	installCrashing(t, e, "file", 1, "2.0.0", hello2)

	resp, err := e.remove("hello") // recovery runs first, then nothing to remove
	if err != nil || resp.GetChanged() {
		t.Fatalf("remove after a crashed first install = %v, %v; want unchanged", resp, err)
	}
	if got, want := e.tree(false), []string{
		"opt/", "opt/hello/", "opt/hello/share/", "opt/hello/share/doc/", "opt/hello/share/doc/hello/",
		"opt/hello/share/doc/hello/NEWS=the admin's own notes\n",
	}; !equal(got, want) {
		t.Fatalf("after undo:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The patch plugin backs a package up with Backup before patching it, and
// rollback installs that backup. The package here ships a world-writable
// directory (var/, 0777 as its archive says), so any local user may replace
// the package's var/cache.db in it with a symlink to a root-only file; the
// test, running as root, plants it itself.
func TestBackupRefusesFilesThatAreNotThePackages(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, e *env, cache string)
		want   string // "" for a backup that succeeds
	}{
		{name: "untouched package", tamper: func(*testing.T, *env, string) {}},
		{
			name: "file replaced by a symlink to a secret",
			tamper: func(t *testing.T, e *env, cache string) {
				secret := filepath.Join(e.root, "etc", "shadow")
				must(t, os.MkdirAll(filepath.Dir(secret), 0o755))
				must(t, os.WriteFile(secret, []byte("root:$6$SECRET"), 0o600))
				must(t, os.Remove(cache))
				must(t, os.Symlink(secret, cache))
			},
			want: "file /opt/app/var/cache.db has been replaced by a symlink",
		},
		{
			name: "file replaced by a symlink to another of the package's files",
			tamper: func(t *testing.T, e *env, cache string) {
				must(t, os.Remove(cache))
				must(t, os.Symlink("../bin/app", cache))
			},
			want: "file /opt/app/var/cache.db has been replaced by a symlink",
		},
		{
			name: "file rewritten with as many bytes",
			tamper: func(t *testing.T, e *env, cache string) {
				must(t, os.WriteFile(cache, []byte("SECRE"), 0o644))
			},
			want: "file /opt/app/var/cache.db has been modified (sha256",
		},
		{
			name: "file rewritten with more bytes",
			tamper: func(t *testing.T, e *env, cache string) {
				must(t, os.WriteFile(cache, []byte("root:$6$SECRET"), 0o644))
			},
			want: "file /opt/app/var/cache.db has been modified (14 bytes, want 5)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.mustInstall("app", "1.0.0",
				file("bin/app", "v1"),
				ent{name: "var/", typ: tar.TypeDir, mode: 0o777},
				file("var/cache.db", "cache"))
			if fi, err := os.Stat(filepath.Join(e.root, "opt/app/var")); err != nil || fi.Mode().Perm() != 0o777 {
				t.Fatalf("var/ mode %v, %v; want 0777 as the archive says", fi.Mode(), err)
			}
			cache := filepath.Join(e.root, "opt/app/var/cache.db")
			tt.tamper(t, e, cache)

			mf, err := Installed(e.root, "app")
			if err != nil || mf == nil {
				t.Fatalf("Installed: %v %v", mf, err)
			}
			backup := filepath.Join(e.arts, "backup.tar.gz")
			err = Backup(e.root, mf, backup)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "repair the package") {
					t.Fatalf("Backup = %v; want it refused: %q, and what to do", err, tt.want)
				}
				if _, err := os.Lstat(backup); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("a refused backup left %s behind (%v)", backup, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Backup of an untouched package: %v", err)
			}
			if got, want := backupEntries(t, backup), []string{"bin/app=v1", "var/cache.db=cache"}; !equal(got, want) {
				t.Fatalf("backup holds %v, want %v", got, want)
			}
			// The rollback: installing the backup puts the package back.
			must(t, os.WriteFile(filepath.Join(e.root, "opt/app/bin/app"), []byte("v2"), 0o644))
			sum, _ := hashFile(backup)
			if _, err := e.m.Apply(context.Background(), &proto.ApplyRequest{Root: e.root,
				Item:         pkgItem("app", "0.9.0", "", wire.State_STATE_PRESENT, &wire.Artifact{Sha256: sum}),
				ArtifactPath: backup}); err != nil {
				t.Fatalf("install the backup: %v", err)
			}
			if got := e.read("opt/app/bin/app"); got != "v1" {
				t.Fatalf("after installing the backup bin/app holds %q, want v1", got)
			}
		})
	}
}

// backupEntries lists the regular files of a .tar.gz as "name=content".
func backupEntries(t *testing.T, p string) []string {
	t.Helper()
	f, err := os.Open(p)
	must(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	must(t, err)
	tr := tar.NewReader(zr)
	var out []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		must(t, err)
		if hdr.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			must(t, err)
			out = append(out, hdr.Name+"="+string(b))
		}
	}
}

// A prefix is followed through symlinks, so another package may be reached
// through it under another name; its files must not be overwritten, nor
// later removed with the package that reached them.
func TestInstallRefusesAPrefixThatLeadsIntoAnotherPackage(t *testing.T) {
	tests := []struct {
		name   string
		prefix string
		setup  func(t *testing.T, e *env)
		want   string // "" when the install goes ahead
	}{
		{
			name:   "through another package's symlink",
			prefix: "/opt/a/cur",
			want:   "prefix /opt/a/cur passes through /opt/a/cur, which belongs to package a",
		},
		{
			name:   "through a host symlink to another package's symlink",
			prefix: "/srv/a/cur",
			setup: func(t *testing.T, e *env) {
				must(t, os.Symlink(filepath.Join(e.root, "opt"), filepath.Join(e.root, "srv")))
			},
			want: "prefix /srv/a/cur passes through /srv/a/cur (through symlinks, /opt/a/cur), which belongs to package a",
		},
		{
			name:   "through a host symlink into another package's prefix",
			prefix: "/srv/conf",
			setup: func(t *testing.T, e *env) {
				must(t, os.Symlink(filepath.Join(e.root, "opt/a/real"), filepath.Join(e.root, "srv")))
			},
			want: "prefix /srv/conf lies, through symlinks, inside /opt/a, the prefix of package a",
		},
		{
			name:   "through a host symlink above another package's prefix",
			prefix: "/srv/b",
			setup: func(t *testing.T, e *env) {
				must(t, os.MkdirAll(filepath.Join(e.root, "srv"), 0o755))
				must(t, os.Symlink(filepath.Join(e.root, "opt"), filepath.Join(e.root, "srv/b")))
			},
			want: "prefix /srv/b holds, through symlinks, /opt/a, the prefix of package a",
		},
		{
			name:   "through a host symlink beside another package",
			prefix: "/srv/b",
			setup: func(t *testing.T, e *env) {
				must(t, os.Symlink(filepath.Join(e.root, "opt"), filepath.Join(e.root, "srv")))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.mustInstall("a", "1.0.0", dir("real/"), file("real/app.conf", "a's config"), symlink("cur", "real"))
			if tt.setup != nil {
				tt.setup(t, e)
			}
			before := e.tree(true)

			p, art := e.artifact(targz(t, file("app.conf", "b's config")))
			_, err := e.m.Apply(context.Background(), &proto.ApplyRequest{Root: e.root,
				Item: pkgItem("b", "1.0.0", tt.prefix, wire.State_STATE_PRESENT, art), ArtifactPath: p})
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("install b at %s = %v; want %q", tt.prefix, err, tt.want)
				}
				if after := e.tree(true); !equal(before, after) {
					t.Fatalf("refused install wrote something:\nbefore %v\nafter  %v", before, after)
				}
			} else {
				if err != nil {
					t.Fatalf("install b at %s: %v", tt.prefix, err)
				}
				if _, err := e.m.Apply(context.Background(), &proto.ApplyRequest{Root: e.root,
					Item: pkgItem("b", "", tt.prefix, wire.State_STATE_ABSENT, nil)}); err != nil {
					t.Fatal(err)
				}
			}
			if got := e.read("opt/a/real/app.conf"); got != "a's config" {
				t.Errorf("package a's /opt/a/real/app.conf holds %q", got)
			}
			if st := e.scan(pkgItem("a", "1.0.0", "", wire.State_STATE_PRESENT, nil)); !st.GetCompliant() {
				t.Errorf("package a scans not compliant: %q", st.GetMessage())
			}
		})
	}
}
