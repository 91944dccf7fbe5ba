package packages

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/proto"
)

func TestValidateArchiveAccepts(t *testing.T) {
	tests := []struct {
		name    string
		entries []ent
		want    []Entry
	}{
		{
			name:    "dot slash names and implied directories",
			entries: []ent{dir("./"), exe("./bin/tool", "x")},
			want: []Entry{
				{Path: "bin", Type: TypeDir, Mode: 0o755},
				{Path: "bin/tool", Type: TypeFile, Mode: 0o755, Size: 1, SHA256: sha([]byte("x"))},
			},
		},
		{
			name:    "symlinks that stay inside",
			entries: []ent{dir("a/"), dir("a/b/"), symlink("a/up", ".."), symlink("l", "a/b"), symlink("x", "l/../.."), symlink("dangling", "nowhere/else")},
			want: []Entry{
				{Path: "a", Type: TypeDir, Mode: 0o755},
				{Path: "a/b", Type: TypeDir, Mode: 0o755},
				{Path: "a/up", Type: TypeSymlink, Mode: 0o777, Target: ".."},
				{Path: "dangling", Type: TypeSymlink, Mode: 0o777, Target: "nowhere/else"},
				{Path: "l", Type: TypeSymlink, Mode: 0o777, Target: "a/b"},
				{Path: "x", Type: TypeSymlink, Mode: 0o777, Target: "l/../.."},
			},
		},
		{
			name:    "setgid and sticky dropped from directories; repeated directory",
			entries: []ent{{name: "shared/", typ: '5', mode: 0o3775}, dir("shared/")},
			want:    []Entry{{Path: "shared", Type: TypeDir, Mode: 0o755}},
		},
		{
			name:    "empty archive",
			entries: nil,
			want:    []Entry{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := ValidateArchive(bytes.NewReader(targz(t, tt.entries...)), DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Entries) != len(tt.want) {
				t.Fatalf("entries %+v, want %+v", plan.Entries, tt.want)
			}
			for i := range tt.want {
				if plan.Entries[i] != tt.want[i] {
					t.Errorf("entry %d = %+v, want %+v", i, plan.Entries[i], tt.want[i])
				}
			}
		})
	}
}

var fuzzLimits = Limits{MaxEntries: 64, MaxTotalSize: 1 << 20, MaxPathLen: 256, MaxNameBytes: 8 << 10}

func fuzzSeeds(f *testing.F) {
	seeds := [][]ent{
		hello1,
		hello2,
		{file("../etc/passwd", "x")},
		{file("/etc/passwd", "x")},
		{symlink("lib", "../../etc")},
		{symlink("sub/up", ".."), symlink("sub/x", "up/..")},
		{dir("d/"), symlink("lnk", "d"), file("lnk/f", "x")},
		{symlink("a", "b"), symlink("b", "a")},
		{file("a", "x"), {name: "b", typ: '1', link: "a"}},
		{{name: "bin/su", typ: '0', mode: 0o4755, body: "x"}},
		{dir("a/"), dir("a/b/"), symlink("l", "a/b"), symlink("x", "l/../.."), file("x2/y", "z")},
	}
	for _, s := range seeds {
		f.Add(rawTar(f, s...))
	}
	f.Add([]byte{})
	f.Add([]byte("not a tar at all"))
}

// FuzzValidateArchive feeds arbitrary tar bytes (gzip'd by the harness, so
// the fuzzer works on the tar) to the validator: it must not panic, and what
// it accepts must be well-formed.
func FuzzValidateArchive(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		plan, err := ValidateArchive(bytes.NewReader(gzStored(data)), fuzzLimits)
		if err != nil {
			return
		}
		var total int64
		for _, e := range plan.Entries {
			if !fs.ValidPath(e.Path) || e.Path == "." || strings.Contains(e.Path, `\`) {
				t.Fatalf("accepted path %q", e.Path)
			}
			if e.Mode&^fs.ModePerm != 0 {
				t.Fatalf("accepted mode %v for %s", e.Mode, e.Path)
			}
			switch e.Type {
			case TypeFile:
				total += e.Size
			case TypeSymlink:
				if e.Target == "" || strings.HasPrefix(e.Target, "/") {
					t.Fatalf("accepted symlink %s -> %q", e.Path, e.Target)
				}
			case TypeDir:
			default:
				t.Fatalf("accepted type %q", e.Type)
			}
		}
		if total != plan.Size || total > fuzzLimits.MaxTotalSize || len(plan.Entries) > 2*fuzzLimits.MaxEntries*fuzzLimits.MaxPathLen {
			t.Fatalf("accepted %d bytes in %d entries", total, len(plan.Entries))
		}
	})
}

// FuzzInstall installs whatever the validator accepts into a temporary root
// and checks with the file system that nothing landed outside the prefix,
// that no symlink leads out of it, and that removal leaves nothing behind.
func FuzzInstall(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		installConfined(t, gzStored(data))
	})
}

// installConfined installs archive and checks that nothing landed outside
// the prefix, that no symlink leads out of it, that a refused archive wrote
// nothing, and that removal leaves nothing behind. It reports whether the
// archive was accepted.
func installConfined(t *testing.T, archive []byte) bool {
	t.Helper()
	e := newEnv(t, WithLimits(fuzzLimits))
	base := filepath.Dir(e.root)
	sentinel := filepath.Join(base, "outside", "sentinel")
	must(t, os.MkdirAll(filepath.Dir(sentinel), 0o755))
	must(t, os.WriteFile(sentinel, []byte("untouched"), 0o644))

	p, art := e.artifact(archive)
	_, err := e.m.Apply(context.Background(), &proto.ApplyRequest{
		Root: e.root, ArtifactPath: p,
		Item: pkgItem("fz", "1", "", wire.State_STATE_PRESENT, art),
	})
	checkConfined(t, base, sentinel)
	if err != nil {
		if got := e.tree(true); len(got) != 0 {
			t.Fatalf("refused install (%v) wrote %v", err, got)
		}
		return false
	}
	for _, rel := range e.tree(false) {
		if !strings.HasPrefix(rel, "opt/") {
			t.Fatalf("installed %s outside the prefix", rel)
		}
	}
	pr, err := os.OpenRoot(filepath.Join(e.root, "opt", "fz"))
	must(t, err)
	defer pr.Close()
	must(t, fs.WalkDir(pr.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			if _, err := pr.Stat(p); err != nil && strings.Contains(err.Error(), "escapes") {
				t.Fatalf("symlink %s leads out of the prefix: %v", p, err)
			}
		}
		return nil
	}))
	if st := e.scan(pkgItem("fz", "1", "", wire.State_STATE_PRESENT, nil)); !st.GetCompliant() {
		t.Fatalf("scan right after install = %v", st)
	}
	if _, err := e.remove("fz"); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if got := e.tree(false); len(got) != 0 {
		t.Fatalf("remove left %v", got)
	}
	return true
}

// TestRandomArchivesStayConfined installs archives made of random entries
// over a small alphabet of names and symlink targets (with "..", ".", and
// names that are also symlinks), which reach the resolver's corners far
// faster than byte-level fuzzing does.
func TestRandomArchivesStayConfined(t *testing.T) {
	randPath := func(rng *rand.Rand, max int, elems ...string) string {
		n := 1 + rng.IntN(max)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = elems[rng.IntN(len(elems))]
		}
		return strings.Join(parts, "/")
	}
	// Entry names rarely climb (those are refused outright); targets often do.
	names := []string{"a", "b", "c", "a", "b", "c", "a", "b", "c", ".."}
	targets := []string{"a", "b", "c", "..", "..", "."}
	iterations := 400
	if testing.Short() {
		iterations = 50
	}
	rng := rand.New(rand.NewPCG(1, 2))
	accepted := 0
	for i := range iterations {
		var entries []ent
		for range 1 + rng.IntN(6) {
			name := randPath(rng, 3, names...)
			switch rng.IntN(4) {
			case 0:
				entries = append(entries, dir(name+"/"))
			case 1:
				entries = append(entries, file(name, name))
			default:
				entries = append(entries, symlink(name, randPath(rng, 4, targets...)))
			}
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			if installConfined(t, targz(t, entries...)) {
				accepted++
			}
		})
	}
	// The generator must produce both kinds, or the test proves nothing.
	if accepted == 0 || accepted == iterations {
		t.Fatalf("%d of %d random archives accepted; want some of each", accepted, iterations)
	}
	t.Logf("%d of %d random archives accepted", accepted, iterations)
}

// checkConfined fails if anything beside the root, the artifacts and the
// sentinel exists in base, or the sentinel changed.
func checkConfined(t *testing.T, base, sentinel string) {
	t.Helper()
	des, err := os.ReadDir(base)
	must(t, err)
	for _, de := range des {
		switch de.Name() {
		case "root", "artifacts", "outside":
		default:
			t.Fatalf("install wrote %s outside its root", filepath.Join(base, de.Name()))
		}
	}
	b, err := os.ReadFile(sentinel)
	if err != nil || string(b) != "untouched" {
		t.Fatalf("sentinel outside the root changed: %q, %v", b, err)
	}
	outside, err := os.ReadDir(filepath.Dir(sentinel))
	if err != nil || len(outside) != 1 {
		t.Fatalf("directory outside the root changed: %v, %v", outside, err)
	}
}
