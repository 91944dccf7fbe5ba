package backup

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzExtract: any bytes as a backup either restore into the directory
// given, with every file inside it, or fail and leave nothing.
func FuzzExtract(f *testing.F) {
	f.Add(handMade(f, entry{name: "../evil", body: "x"}))
	f.Add(handMade(f, entry{name: StoreFile, body: "db"}, entry{name: ManifestFile, body: manifestOf(File{Path: StoreFile, Size: 2, SHA256: dbSHA})}))
	var buf bytes.Buffer
	if _, err := Write(&buf, Source{DataDir: f.TempDir(), Store: func(fn func(Snapshot) error) error { return fn(fakeStore("db")) }}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("age-encryption.org/v1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		root := t.TempDir()
		out := filepath.Join(root, "restored")
		_, err := Extract(bytes.NewReader(b), out)
		entries, _ := os.ReadDir(root)
		if err != nil {
			if len(entries) != 0 {
				t.Fatalf("a refused backup left %v", entries)
			}
			return
		}
		if len(entries) != 1 || entries[0].Name() != "restored" {
			t.Fatalf("a restore wrote %v beside its directory", entries)
		}
		filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
			if rel, _ := filepath.Rel(out, p); strings.HasPrefix(rel, "..") {
				t.Fatalf("restored %s outside its directory", p)
			}
			return nil
		})
	})
}
