package packages

import (
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// checkConfinedManifest fails t unless every path m names, joined to
// root, stays under root: files inside the prefix, directories inside it
// or above it. Remove deletes what a manifest names.
func checkConfinedManifest(t *testing.T, root string, m *Manifest) {
	t.Helper()
	prefix := filepath.Join(root, filepath.FromSlash(m.prefixRel()))
	if !strings.HasPrefix(prefix, root+string(filepath.Separator)) || prefix == filepath.Join(root, filepath.FromSlash(StateDir)) {
		t.Fatalf("prefix %q leads to %s", m.Prefix, prefix)
	}
	for _, f := range m.Files {
		p := filepath.Join(root, filepath.FromSlash(f.Path))
		if !strings.HasPrefix(p, prefix+string(filepath.Separator)) || path.Clean(f.Path) != f.Path {
			t.Fatalf("file %q leads to %s, outside %s", f.Path, p, prefix)
		}
	}
	for _, d := range m.Dirs {
		p := filepath.Join(root, filepath.FromSlash(d))
		inside := strings.HasPrefix(p, prefix+string(filepath.Separator))
		above := p == prefix || strings.HasPrefix(prefix, p+string(filepath.Separator))
		if !(inside || above) || !strings.HasPrefix(p, root+string(filepath.Separator)) || path.Clean(d) != d {
			t.Fatalf("directory %q leads to %s, neither inside nor above %s", d, p, prefix)
		}
	}
}

// The manifests and journals of installed packages are files in the
// root, which anything running as root may have changed: whatever one
// says, the plugin either refuses it with a message naming the file or
// is told only paths confined to the package's prefix, and what it saves
// it reads back alike.
func FuzzLoadManifest(f *testing.F) {
	good := `{"format":1,"name":"hello","version":"1.0","prefix":"/opt/hello","installed_at":"2026-01-02T03:04:05Z",` +
		`"files":[{"path":"opt/hello/bin/hello","size":5,"mode":"0755","sha256":"00"},{"path":"opt/hello/l","mode":"0777","link":"bin/hello"}],"dirs":["opt","opt/hello","opt/hello/bin"]}`
	f.Add("hello", []byte(good), []byte(`{"format":1,"op":"install","new":`+good+`}`))
	f.Add("hello", []byte(strings.Replace(good, `"opt/hello/bin/hello"`, `"opt/hello/../../etc/passwd"`, 1)), []byte(`{"format":1,"op":"remove"}`))
	f.Add("hello", []byte(strings.Replace(good, `"/opt/hello"`, `"/var/lib/outpost"`, 1)), []byte(`{"format":1,"op":"remove","old":`+good+`}`))
	f.Add("hello", []byte(strings.Replace(good, `["opt",`, `["etc","",".",`, 1)), []byte(`null`))
	f.Add("hello", []byte(strings.Replace(good, `"0755"`, `"7777"`, 1)), []byte(`{}`))
	f.Add("hello", []byte(strings.Replace(good, `"opt/hello/l"`, `"opt/hello"`, 1)), []byte(`{"format":2}`))
	f.Add("x", []byte(`{"format":1,"name":"x","prefix":"/opt/x\\y"}`), []byte(`{`))
	root := f.TempDir()
	st := store{root: root}
	if err := os.MkdirAll(st.dir(), 0o755); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name string, manifest, journal []byte) {
		if checkName(name) != nil {
			return
		}
		defer os.Remove(st.manifestPath(name))
		defer os.Remove(st.journalPath(name))
		if err := os.WriteFile(st.manifestPath(name), manifest, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(st.journalPath(name), journal, 0o600); err != nil {
			t.Fatal(err)
		}
		m, err := st.load(name)
		switch {
		case err != nil:
			if !strings.Contains(err.Error(), st.manifestPath(name)) {
				t.Fatalf("error %q does not name the manifest", err)
			}
		case m == nil:
			t.Fatal("a manifest on disk read as none")
		default:
			checkConfinedManifest(t, root, m)
			want, _ := json.Marshal(m)
			if err := st.save(m); err != nil {
				t.Fatal(err)
			}
			again, err := st.load(name)
			if err != nil {
				t.Fatalf("saved %s, read back: %v", want, err)
			}
			if got, _ := json.Marshal(again); string(got) != string(want) {
				t.Fatalf("saved %s, read back %s", want, got)
			}
		}
		j, err := st.loadJournal(name)
		switch {
		case err != nil:
			if !strings.Contains(err.Error(), st.journalPath(name)) {
				t.Fatalf("error %q does not name the journal", err)
			}
		case j == nil:
			t.Fatal("a journal on disk read as none")
		default:
			if j.Op != opInstall && j.Op != opRemove {
				t.Fatalf("journal of operation %q", j.Op)
			}
			for _, m := range []*Manifest{j.Old, j.New} {
				if m != nil {
					checkConfinedManifest(t, root, m)
				}
			}
		}
	})
}
