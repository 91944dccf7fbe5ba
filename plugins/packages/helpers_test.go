package packages

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/proto"
)

// ent is one entry of a test archive.
type ent struct {
	name string
	typ  byte
	mode int64
	body string
	link string
}

func file(name, body string) ent { return ent{name: name, typ: tar.TypeReg, mode: 0o644, body: body} }
func exe(name, body string) ent  { return ent{name: name, typ: tar.TypeReg, mode: 0o755, body: body} }
func dir(name string) ent        { return ent{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) ent {
	return ent{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
}

// targz builds a gzip'd tar of entries, in order.
func targz(tb testing.TB, entries ...ent) []byte {
	tb.Helper()
	return gz(rawTar(tb, entries...))
}

// rawTar builds an uncompressed tar of entries, in order.
func rawTar(tb testing.TB, entries ...ent) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:     e.name,
			Typeflag: e.typ,
			Mode:     e.mode,
			Linkname: e.link,
			ModTime:  time.Unix(1700000000, 0),
			Format:   tar.FormatPAX,
		}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			tb.Fatalf("tar header %s: %v", e.name, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// gz compresses b.
func gz(b []byte) []byte { return gzLevel(b, gzip.DefaultCompression) }

// gzStored wraps b in gzip without compressing it: cheap, for fuzzing.
func gzStored(b []byte) []byte { return gzLevel(b, gzip.NoCompression) }

func gzLevel(b []byte, level int) []byte {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		panic(err)
	}
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// env is a plugin root and a Manager acting in it.
type env struct {
	t    testing.TB
	root string
	arts string // where artifacts are written, outside the root
	m    *Manager
}

func newEnv(t testing.TB, opts ...Option) *env {
	t.Helper()
	base := t.TempDir()
	e := &env{t: t, root: filepath.Join(base, "root"), arts: filepath.Join(base, "artifacts")}
	for _, d := range []string{e.root, e.arts} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.m = New(logging.Discard(), opts...)
	return e
}

// artifact writes an archive and returns its path and its wire.Artifact.
func (e *env) artifact(data []byte) (string, *wire.Artifact) {
	e.t.Helper()
	sum := sha(data)
	p := filepath.Join(e.arts, sum+".tar.gz")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p, &wire.Artifact{Sha256: sum, Size: int64(len(data)), Name: "pkg.tar.gz"}
}

func pkgItem(name, version, prefix string, state wire.State, art *wire.Artifact) *wire.Item {
	return &wire.Item{
		Id:       "package/" + name,
		Kind:     Kind,
		State:    state,
		Artifact: art,
		Spec:     &wire.Item_Package{Package: &wire.PackageSpec{Name: name, Version: version, Prefix: prefix}},
	}
}

// install applies name@version from an archive of entries.
func (e *env) install(name, version string, entries ...ent) (*proto.ApplyResponse, error) {
	e.t.Helper()
	p, art := e.artifact(targz(e.t, entries...))
	return e.m.Apply(context.Background(), &proto.ApplyRequest{
		Root:         e.root,
		Item:         pkgItem(name, version, "", wire.State_STATE_PRESENT, art),
		ArtifactPath: p,
	})
}

func (e *env) mustInstall(name, version string, entries ...ent) *proto.ApplyResponse {
	e.t.Helper()
	resp, err := e.install(name, version, entries...)
	if err != nil {
		e.t.Fatalf("install %s %s: %v", name, version, err)
	}
	return resp
}

func (e *env) remove(name string) (*proto.ApplyResponse, error) {
	e.t.Helper()
	return e.m.Apply(context.Background(), &proto.ApplyRequest{
		Root: e.root,
		Item: pkgItem(name, "", "", wire.State_STATE_ABSENT, nil),
	})
}

// scan scans one item.
func (e *env) scan(item *wire.Item) *proto.ItemState {
	e.t.Helper()
	resp, err := e.m.Scan(context.Background(), &proto.ScanRequest{Root: e.root, Items: []*wire.Item{item}})
	if err != nil {
		e.t.Fatalf("scan: %v", err)
	}
	return resp.GetItems()[0]
}

// tree lists everything under the root as "path" for directories/ ,
// "path=content" for files and "path->target" for symlinks, state
// directory excluded unless withState. The lock file, and the state
// directory and those above it, which every Apply creates to hold the
// lock, are never listed: the files in them are.
func (e *env) tree(withState bool) []string {
	e.t.Helper()
	var out []string
	err := filepath.WalkDir(e.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(e.root, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if !withState && (rel == "var" || strings.HasPrefix(rel, "var/")) {
			return nil
		}
		if rel == StateDir+"/"+lockName || (d.IsDir() && (rel == StateDir || strings.HasPrefix(StateDir, rel+"/"))) {
			return nil
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			t, _ := os.Readlink(p)
			out = append(out, rel+"->"+t)
		case d.IsDir():
			out = append(out, rel+"/")
		default:
			b, _ := os.ReadFile(p)
			out = append(out, rel+"="+string(b))
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func (e *env) read(rel string) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.root, filepath.FromSlash(rel)))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

func (e *env) exists(rel string) bool {
	_, err := os.Lstat(filepath.Join(e.root, filepath.FromSlash(rel)))
	return err == nil
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// hello1 and hello2 are two versions of a package: 2 drops share/hello/motd
// (and its directory) and adds share/doc/hello/NEWS.
var (
	hello1 = []ent{
		dir("bin/"),
		exe("bin/hello", "#!/bin/sh\necho hello 1.0.0\n"),
		file("share/doc/hello/README", "hello\n"),
		file("share/hello/motd", "welcome\n"),
		symlink("bin/hi", "hello"),
	}
	hello2 = []ent{
		exe("bin/hello", "#!/bin/sh\necho hello 2.0.0\n"),
		file("share/doc/hello/README", "hello, again\n"),
		file("share/doc/hello/NEWS", "2.0.0: motd is gone\n"),
		symlink("bin/hi", "hello"),
	}
)
