package packages

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/outposthq/outpost/pkg/fsutil"
)

// StateDir is where, under the plugin's root, the manifests of installed
// packages are kept: <name>.json for an installed package, <name>.journal
// while a change to it is under way.
const StateDir = "var/lib/outpost/packages"

const manifestFormat = 1

// Manifest records what an installed package put on disk, so that it can be
// verified, upgraded and removed exactly.
type Manifest struct {
	Format         int       `json:"format"`
	Name           string    `json:"name"`
	Version        string    `json:"version"`
	ArtifactSHA256 string    `json:"artifact_sha256"`
	Prefix         string    `json:"prefix"` // absolute within the root, e.g. /opt/hello
	InstalledAt    time.Time `json:"installed_at"`
	Files          []File    `json:"files"`
	// Dirs are the directories this package created (relative to the root),
	// removed again when they are empty once its files are gone.
	Dirs []string `json:"dirs"`
	// PostInstallPending is set when the package has a post-install hook
	// that has not yet succeeded. It is committed with the manifest, before
	// the hook runs, and cleared only once the hook exits zero: a hook cut
	// short by a crash or a kill leaves it set, so the package is reported
	// not compliant and the hook runs again at the next Apply.
	PostInstallPending bool `json:"post_install_pending,omitempty"`
}

// File is one installed file or symlink.
type File struct {
	Path   string `json:"path"` // relative to the root, slash-separated
	Size   int64  `json:"size"`
	Mode   Mode   `json:"mode"`
	SHA256 string `json:"sha256,omitempty"` // regular files
	Link   string `json:"link,omitempty"`   // symlinks: the target
}

// Mode is a file's permission bits, written in octal ("0755").
type Mode fs.FileMode

// MarshalText writes the mode in octal.
func (m Mode) MarshalText() ([]byte, error) {
	return []byte(fmt.Sprintf("%04o", uint32(m))), nil
}

// UnmarshalText reads an octal mode.
func (m *Mode) UnmarshalText(b []byte) error {
	n, err := strconv.ParseUint(string(b), 8, 32)
	if err != nil || n > uint64(fs.ModePerm) {
		return fmt.Errorf("mode %q: want octal permission bits like 0755", b)
	}
	*m = Mode(n)
	return nil
}

// prefixRel is the prefix relative to the root: "opt/hello".
func (m *Manifest) prefixRel() string { return strings.TrimPrefix(m.Prefix, "/") }

// inPrefix returns p (relative to the root) relative to the prefix.
func (m *Manifest) inPrefix(p string) (string, bool) {
	return strings.CutPrefix(p, m.prefixRel()+"/")
}

// check refuses a manifest that could point the plugin outside the prefix:
// the state directory is the plugin's, but it is still a file on disk.
func (m *Manifest) check(name string) error {
	if m.Format != manifestFormat {
		return fmt.Errorf("format %d, want %d", m.Format, manifestFormat)
	}
	if m.Name != name {
		return fmt.Errorf("names package %q", m.Name)
	}
	if err := checkPrefix(m.Prefix); err != nil {
		return err
	}
	for _, f := range m.Files {
		rel, ok := m.inPrefix(f.Path)
		if !ok || !fs.ValidPath(rel) || rel == "." {
			return fmt.Errorf("file %q is not inside the prefix %s", f.Path, m.Prefix)
		}
	}
	for _, d := range m.Dirs {
		rel, inside := m.inPrefix(d)
		switch {
		case inside && fs.ValidPath(rel) && rel != ".":
		case !inside && fs.ValidPath(d) && (d == m.prefixRel() || strings.HasPrefix(m.prefixRel(), d+"/")):
			// the prefix itself or a directory above it
		default:
			return fmt.Errorf("directory %q is neither inside nor above the prefix %s", d, m.Prefix)
		}
	}
	return nil
}

const (
	opInstall = "install"
	opRemove  = "remove"
)

// journal is written before a change touches anything, so that a change cut
// short by a crash is finished or undone by the next Apply.
type journal struct {
	Format int       `json:"format"`
	Op     string    `json:"op"`            // install or remove
	Old    *Manifest `json:"old,omitempty"` // what was installed before, if anything
	New    *Manifest `json:"new,omitempty"` // install: what is being installed
}

// store reads and writes the manifests and journals under one root.
type store struct {
	root string
}

func (s store) dir() string { return filepath.Join(s.root, filepath.FromSlash(StateDir)) }

func (s store) manifestPath(name string) string { return filepath.Join(s.dir(), name+".json") }

func (s store) journalPath(name string) string { return filepath.Join(s.dir(), name+".journal") }

// load returns the manifest of an installed package, or nil if it is not
// installed.
func (s store) load(name string) (*Manifest, error) {
	p := s.manifestPath(name)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest %s is unreadable: %w", p, err)
	}
	if err := m.check(name); err != nil {
		return nil, fmt.Errorf("manifest %s is corrupt: %w", p, err)
	}
	return &m, nil
}

func (s store) save(m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest of %s: %w", m.Name, err)
	}
	if err := fsutil.WriteFileAtomic(s.manifestPath(m.Name), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return nil
}

func (s store) removeManifest(name string) error { return s.removeFile(s.manifestPath(name)) }

func (s store) removeFile(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return fsutil.SyncDir(filepath.Dir(p))
}

// list returns the manifests of all installed packages.
func (s store) list() ([]*Manifest, error) {
	names, err := s.names(".json")
	if err != nil {
		return nil, err
	}
	var out []*Manifest
	for _, name := range names {
		m, err := s.load(name)
		if err != nil {
			return nil, err
		}
		if m != nil {
			out = append(out, m)
		}
	}
	return out, nil
}

// names lists the package names that have a file with ext in the state
// directory, ignoring anything that is not a package's (temporary files).
func (s store) names(ext string) ([]string, error) {
	des, err := os.ReadDir(s.dir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list installed packages: %w", err)
	}
	var names []string
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), ext)
		if ok && de.Type().IsRegular() && checkName(name) == nil {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}

func (s store) loadJournal(name string) (*journal, error) {
	p := s.journalPath(name)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	var j journal
	err = json.Unmarshal(b, &j)
	if err == nil {
		err = j.check(name)
	}
	if err != nil {
		return nil, fmt.Errorf("journal %s is unreadable (%w); check the files under the package's prefix, then delete it", p, err)
	}
	return &j, nil
}

func (j *journal) check(name string) error {
	if j.Format != manifestFormat {
		return fmt.Errorf("format %d, want %d", j.Format, manifestFormat)
	}
	switch {
	case j.Op == opInstall && j.New != nil:
	case j.Op == opRemove && j.Old != nil:
	default:
		return fmt.Errorf("operation %q without its manifest", j.Op)
	}
	for _, m := range []*Manifest{j.Old, j.New} {
		if m == nil {
			continue
		}
		if err := m.check(name); err != nil {
			return err
		}
	}
	return nil
}

func (s store) saveJournal(name string, j *journal) error {
	j.Format = manifestFormat
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("encode journal of %s: %w", name, err)
	}
	if err := fsutil.WriteFileAtomic(s.journalPath(name), b, 0o600); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	return nil
}

func (s store) removeJournal(name string) error { return s.removeFile(s.journalPath(name)) }

// ancestors returns the directories above p, nearest first: "a/b/c" → a/b, a.
func ancestors(p string) []string {
	var out []string
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		out = append(out, d)
	}
	return out
}
