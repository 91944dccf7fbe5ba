package registry

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/outposthq/outpost/plugins"
)

// fileBackend keeps values in settings files inside a root.
type fileBackend struct {
	root  string // with symlinks resolved
	given string // as the agent named it
	allow []string
}

func newFileBackend(root string, allow []string) (*fileBackend, error) {
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("root %s: %w", root, err)
	}
	return &fileBackend{root: real, given: filepath.Clean(root), allow: allow}, nil
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

// loaded is a settings file as read, with its folder open.
type loaded struct {
	*target
	doc    *settingsDoc
	data   []byte
	mode   fs.FileMode
	exists bool
}

// load finds the file safely (see open) and reads and parses it; a
// missing file is an empty document. The caller closes it.
func (b *fileBackend) load(s spec) (*loaded, error) {
	t, err := b.open(s.path)
	if err != nil {
		return nil, err
	}
	l := &loaded{target: t, mode: 0o644}
	data, mode, err := t.read()
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		t.close()
		return nil, fmt.Errorf("read %s: %w", s.path, err)
	default:
		l.data, l.mode, l.exists = data, mode, true
	}
	if l.doc, err = parseSettings(data, s.format); err != nil {
		t.close()
		return nil, fmt.Errorf("read %s: %w", s.path, err)
	}
	return l, nil
}

func (b *fileBackend) exists(s spec) (bool, error) {
	l, err := b.load(s)
	if err != nil {
		return false, err
	}
	l.close()
	return l.exists, nil
}

func (b *fileBackend) getValue(s spec) (value, bool, error) {
	l, err := b.load(s)
	if err != nil {
		return value{}, false, err
	}
	defer l.close()
	v, ok := l.doc.get(s.section, s.name)
	return value{Data: []string{v}}, ok, nil
}

func (b *fileBackend) setValue(s spec, v value) error {
	l, err := b.load(s)
	if err != nil {
		return err
	}
	defer l.close()
	text := v.Data
	if v.Type != "" {
		text = []string{fileValue(v.Type, v.Data)}
	}
	if len(text) != 1 {
		return fmt.Errorf("a settings file holds one line per value, got %d", len(text))
	}
	l.doc.set(s.section, s.name, text[0])
	return l.write(l.doc.bytes(), l.mode)
}

func (b *fileBackend) deleteValue(s spec) (bool, error) {
	l, err := b.load(s)
	if err != nil {
		return false, err
	}
	defer l.close()
	if !l.exists || !l.doc.del(s.section, s.name) {
		return false, nil
	}
	return true, l.write(l.doc.bytes(), l.mode)
}

func (b *fileBackend) snapshotKey(s spec) (*keySnapshot, error) {
	l, err := b.load(s)
	if err != nil {
		return nil, err
	}
	defer l.close()
	if !l.exists {
		return nil, nil
	}
	if s.format == FormatINI && s.section != "" {
		if !l.doc.hasSection(s.section) {
			return nil, nil
		}
		return &keySnapshot{Lines: l.doc.sectionLines(s.section)}, nil
	}
	return &keySnapshot{Content: l.data, Mode: l.mode}, nil
}

func (b *fileBackend) deleteKey(s spec) error {
	l, err := b.load(s)
	if err != nil {
		return err
	}
	defer l.close()
	if !l.exists {
		return nil
	}
	if s.format == FormatINI && s.section != "" {
		if l.doc.deleteSection(s.section) {
			return l.write(l.doc.bytes(), l.mode)
		}
		return nil
	}
	return l.remove()
}

func (b *fileBackend) restoreKey(s spec, snap *keySnapshot) error {
	l, err := b.load(s)
	if err != nil {
		return err
	}
	defer l.close()
	if s.format == FormatINI && s.section != "" {
		if l.doc.hasSection(s.section) {
			l.doc.deleteSection(s.section)
		}
		if err := l.doc.appendRaw(snap.Lines); err != nil {
			return fmt.Errorf("restore section [%s] of %s: %w", s.section, s.path, err)
		}
		return l.write(l.doc.bytes(), l.mode)
	}
	mode := l.mode
	if snap.Mode != 0 {
		mode = snap.Mode
	}
	return l.write(snap.Content, mode)
}

func (b *fileBackend) removeIfEmpty(s spec) error {
	l, err := b.load(s)
	if err != nil {
		return err
	}
	defer l.close()
	if !l.exists || !l.doc.empty() {
		return nil
	}
	return l.remove()
}
