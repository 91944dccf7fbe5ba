package fsutil

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "state.json")
	for _, content := range []string{"first", "second, longer than the first"} {
		if err := WriteFileAtomic(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Fatalf("read %q, want %q", got, content)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

// What a write cut short by a kill left beside a file goes once it is old
// enough to be no write under way; nothing else does.
func TestRemoveLeftoversTakesOnlyOldTemporaryFilesOfThatFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "outpost-agent")
	old := time.Now().Add(-2 * time.Hour)
	files := map[string]bool{ // name → expected to go
		".outpost-agent.tmp-123":       true,
		".outpost-agent.tmp-456":       false, // young: a write under way
		".outpost-agent-2.tmp-1":       false, // another file's
		"outpost-agent":                false,
		".outpost-agent.outpost-other": false,
	}
	for name := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if name != ".outpost-agent.tmp-456" {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Mkdir(filepath.Join(dir, ".outpost-agent.tmp-dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if n := RemoveLeftovers(path, time.Hour); n != 1 {
		t.Fatalf("removed %d files; want 1", n)
	}
	for name, gone := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		if gone != os.IsNotExist(err) {
			t.Errorf("%s: gone %v, want %v", name, os.IsNotExist(err), gone)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".outpost-agent.tmp-dir")); err != nil {
		t.Errorf("a directory was taken: %v", err)
	}
}

// WriteLeftover knows WriteFileAtomic's temporary names and nothing else.
func TestWriteLeftoverKnowsOnlyTemporaryNames(t *testing.T) {
	for name, want := range map[string]bool{
		".policy.pb.tmp-123456": true, ".a.tmp-1": true,
		"policy.pb.tmp-1": false, ".tmp-1": false, ".a.tmp-": false, ".a.tmp-12x": false, ".a.tmp": false, "policy.pb": false,
	} {
		if got := WriteLeftover(name); got != want {
			t.Errorf("WriteLeftover(%q) = %v, want %v", name, got, want)
		}
	}
	dir := t.TempDir()
	if err := WriteFileAtomic(filepath.Join(dir, "state.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if WriteLeftover(e.Name()) {
			t.Errorf("a finished write left %s, taken for a leftover", e.Name())
		}
	}
}
