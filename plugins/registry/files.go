package registry

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/plugins"
)

// fileBackend keeps values in settings files inside a root.
type fileBackend struct {
	root  string // with symlinks resolved
	allow []string
}

func newFileBackend(root string, allow []string) (*fileBackend, error) {
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("root %s: %w", root, err)
	}
	return &fileBackend{root: real, allow: allow}, nil
}

// ErrOutside is wrapped by errors about paths the plugin may not touch: a
// refusal the agent does not retry.
var ErrOutside = plugins.Refusal("outside what the registry plugin may touch")

func (b *fileBackend) allowed(p string) bool {
	for _, a := range b.allow {
		if strings.HasPrefix(p, a) {
			return true
		}
	}
	return false
}

// resolve maps a policy path to the file on disk, refusing one that is
// outside the allowed prefixes, in the plugin's own state, or that a
// symlink leads out of the root or out of the allowed prefixes.
func (b *fileBackend) resolve(p string) (string, error) {
	if err := checkFilePath(p); err != nil {
		return "", fmt.Errorf("%w: %w", err, ErrOutside)
	}
	allowList := strings.Join(b.allow, ", ")
	if !b.allowed(p) {
		return "", fmt.Errorf("path %s is %w: settings files must be under %s (set %s on the agent to allow others)", p, ErrOutside, allowList, AllowEnv)
	}
	if rel := strings.TrimPrefix(p, "/"); rel == StateDir || strings.HasPrefix(rel, StateDir+"/") {
		return "", fmt.Errorf("path %s is the plugin's own state: %w", p, ErrOutside)
	}
	full := filepath.Join(b.root, filepath.FromSlash(p))
	// Follow symlinks through the part of the path that exists.
	existing, rest := full, ""
	for {
		if _, err := os.Lstat(existing); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("look at %s: %w", p, err)
		}
		parent := filepath.Dir(existing)
		rest = filepath.Join(filepath.Base(existing), rest)
		if parent == existing {
			break
		}
		existing = parent
	}
	real, err := filepath.EvalSymlinks(existing)
	if err != nil {
		return "", fmt.Errorf("path %s: a symlink on it does not resolve: %v: %w", p, err, ErrOutside)
	}
	real = filepath.Join(real, rest)
	rel, err := filepath.Rel(b.root, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("path %s leads through a symlink to %s, out of the root: %w", p, real, ErrOutside)
	}
	logical := "/" + filepath.ToSlash(rel)
	if !b.allowed(logical) {
		return "", fmt.Errorf("path %s leads through a symlink to %s, which is not under %s: %w", p, logical, allowList, ErrOutside)
	}
	if fi, err := os.Stat(real); err == nil && !fi.Mode().IsRegular() {
		return "", fmt.Errorf("path %s is not a regular file", p)
	}
	return real, nil
}

// load reads and parses the file; a missing file is an empty document.
func (b *fileBackend) load(s spec) (string, *settingsDoc, fs.FileMode, bool, error) {
	p, err := b.resolve(s.path)
	if err != nil {
		return "", nil, 0, false, err
	}
	mode := fs.FileMode(0o644)
	data, fmode, err := readSettings(p)
	exists := err == nil
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", nil, 0, false, fmt.Errorf("read %s: %w", s.path, err)
	default:
		mode = fmode
	}
	doc, err := parseSettings(data, s.format)
	if err != nil {
		return "", nil, 0, false, fmt.Errorf("read %s: %w", s.path, err)
	}
	return p, doc, mode, exists, nil
}

// readSettings reads the file at p and its permission bits. One larger
// than MaxSettingsFile is refused having read no more than that: the file
// may have grown, or been swapped, since it was looked at, and the plugin
// runs as root with the memory of the agent's host.
func readSettings(p string) ([]byte, fs.FileMode, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if fi.Size() > MaxSettingsFile {
		return nil, 0, fmt.Errorf("the file is %d bytes, more than the %d a settings file may have", fi.Size(), MaxSettingsFile)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSettingsFile+1))
	if err != nil {
		return nil, 0, err
	}
	return data, fi.Mode().Perm(), nil
}

func (b *fileBackend) save(p string, doc *settingsDoc, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(p), err)
	}
	return writeKeepingOwner(p, doc.bytes(), mode)
}

// writeKeepingOwner writes p atomically; a file already there keeps its
// owner and group (the agent writes as root, and an application that
// reads only its own 0600 config must still read it).
func writeKeepingOwner(p string, data []byte, mode fs.FileMode) error {
	uid, gid := -1, -1
	if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
		uid, gid = fileOwner(fi)
	}
	return fsutil.WriteFileAtomicOwned(p, data, mode, uid, gid)
}

func (b *fileBackend) exists(s spec) (bool, error) {
	_, _, _, ok, err := b.load(s)
	return ok, err
}

func (b *fileBackend) getValue(s spec) (value, bool, error) {
	_, doc, _, _, err := b.load(s)
	if err != nil {
		return value{}, false, err
	}
	v, ok := doc.get(s.section, s.name)
	return value{Data: []string{v}}, ok, nil
}

func (b *fileBackend) setValue(s spec, v value) error {
	p, doc, mode, _, err := b.load(s)
	if err != nil {
		return err
	}
	text := v.Data
	if v.Type != "" {
		text = []string{fileValue(v.Type, v.Data)}
	}
	if len(text) != 1 {
		return fmt.Errorf("a settings file holds one line per value, got %d", len(text))
	}
	doc.set(s.section, s.name, text[0])
	return b.save(p, doc, mode)
}

func (b *fileBackend) deleteValue(s spec) (bool, error) {
	p, doc, mode, exists, err := b.load(s)
	if err != nil || !exists {
		return false, err
	}
	if !doc.del(s.section, s.name) {
		return false, nil
	}
	return true, b.save(p, doc, mode)
}

func (b *fileBackend) snapshotKey(s spec) (*keySnapshot, error) {
	p, doc, mode, exists, err := b.load(s)
	if err != nil || !exists {
		return nil, err
	}
	if s.format == FormatINI && s.section != "" {
		if !doc.hasSection(s.section) {
			return nil, nil
		}
		return &keySnapshot{Lines: doc.sectionLines(s.section)}, nil
	}
	data, _, err := readSettings(p)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.path, err)
	}
	return &keySnapshot{Content: data, Mode: mode}, nil
}

func (b *fileBackend) deleteKey(s spec) error {
	p, doc, mode, exists, err := b.load(s)
	if err != nil || !exists {
		return err
	}
	if s.format == FormatINI && s.section != "" {
		if doc.deleteSection(s.section) {
			return b.save(p, doc, mode)
		}
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", s.path, err)
	}
	return fsutil.SyncDir(filepath.Dir(p))
}

func (b *fileBackend) restoreKey(s spec, snap *keySnapshot) error {
	p, doc, mode, _, err := b.load(s)
	if err != nil {
		return err
	}
	if s.format == FormatINI && s.section != "" {
		if doc.hasSection(s.section) {
			doc.deleteSection(s.section)
		}
		if err := doc.appendRaw(snap.Lines); err != nil {
			return fmt.Errorf("restore section [%s] of %s: %w", s.section, s.path, err)
		}
		return b.save(p, doc, mode)
	}
	if snap.Mode != 0 {
		mode = snap.Mode
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(p), err)
	}
	return writeKeepingOwner(p, snap.Content, mode)
}

func (b *fileBackend) removeIfEmpty(s spec) error {
	p, doc, _, exists, err := b.load(s)
	if err != nil || !exists || !doc.empty() {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", s.path, err)
	}
	return nil
}
