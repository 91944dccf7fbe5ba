// Package registry is the "registry" plugin: it sets, deletes and restores
// configuration values. On Windows it manages the real registry (keys such
// as HKLM\SOFTWARE\Vendor); everywhere it manages settings files in the
// same model — a file (or an ini section) is a key, a setting is a value —
// such as /etc/sysctl.d/99-outpost.conf or an application's ini file.
//
// Before its first change to a value the plugin journals the original
// (under /var/lib/outpost/registry in the plugin's root), so that an item
// whose state becomes absent puts back exactly what was there, or removes
// what was not. Settings files are confined: their path must be absolute
// without .., lie inside the root after every symlink is followed, and start
// with one of the allowed prefixes (/etc/ and /opt/ unless the agent's
// environment sets OUTPOST_REGISTRY_ALLOW). The path is walked one element
// at a time, and a step that would let a user other than root choose what
// root touches of someone else's is refused (see safeStep). Files are
// rewritten atomically, through a handle on the folder that was checked;
// lines the plugin does not manage are kept byte for byte.
//
// It is not a configuration-management language: no templates, no
// whole-file content, no services restarted after a change.
package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins"
	"github.com/outposthq/outpost/plugins/proto"
)

// Version is the plugin's version, reported by Describe.
var Version = "0.1.0"

// StateDir is where, inside the root, originals are journaled.
const StateDir = "var/lib/outpost/registry"

// DefaultAllow are the path prefixes settings files may have unless
// configured otherwise.
var DefaultAllow = []string{"/etc/", "/opt/"}

// AllowEnv names the environment variable (colon-separated prefixes) that
// replaces DefaultAllow in the plugin process.
const AllowEnv = "OUTPOST_REGISTRY_ALLOW"

// ErrNotApplicable is wrapped by errors about items this host cannot have,
// such as a registry key on Linux.
var ErrNotApplicable = errors.New("not applicable on this host")

// Manager implements plugins.Plugin for registry values and settings.
type Manager struct {
	logger *slog.Logger
	allow  []string
	mu     sync.Mutex // one change at a time: items may share a file
}

var _ plugins.Plugin = (*Manager)(nil)

// Option changes a Manager's defaults.
type Option func(*Manager)

// WithAllow sets the path prefixes settings files may have. Each must be
// absolute and end in "/".
func WithAllow(prefixes []string) Option { return func(m *Manager) { m.allow = prefixes } }

// AllowFromEnv returns the prefixes in $OUTPOST_REGISTRY_ALLOW, or
// DefaultAllow when it is unset or has none.
func AllowFromEnv() []string {
	var out []string
	for _, p := range strings.Split(os.Getenv(AllowEnv), ":") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !strings.HasSuffix(p, "/") {
			p += "/"
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return DefaultAllow
	}
	return out
}

// New returns a Manager allowing DefaultAllow.
func New(logger *slog.Logger, opts ...Option) *Manager {
	m := &Manager{logger: logger.With("component", "registry"), allow: DefaultAllow}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Describe says what this plugin is.
func (m *Manager) Describe(context.Context, *proto.DescribeRequest) (*proto.DescribeResponse, error) {
	caps := []string{"settings-files", "keyvalue", "ini", "set", "delete_value", "delete_key", "restore"}
	if registrySupported {
		caps = append(caps, "windows-registry")
	}
	return &proto.DescribeResponse{Kind: Kind, Version: Version, Capabilities: caps}, nil
}

// value is a value as stored: for settings files Type is empty and Data
// holds the line's text; for the registry both are typed.
type value struct {
	Type string   `json:"type,omitempty"`
	Data []string `json:"data"`
}

// keySnapshot is a key as it was before delete_key removed it.
type keySnapshot struct {
	Lines   []string     `json:"lines,omitempty"`   // an ini section, header included
	Content []byte       `json:"content,omitempty"` // a whole keyvalue file
	Mode    fs.FileMode  `json:"mode,omitempty"`
	Values  []namedValue `json:"values,omitempty"` // a registry key's values
}

type namedValue struct {
	Name  string `json:"name"`
	Value value  `json:"value"`
}

// backend reads and changes one store of values: settings files or the
// Windows registry.
type backend interface {
	getValue(s spec) (v value, ok bool, err error)
	setValue(s spec, v value) error
	deleteValue(s spec) (bool, error)
	snapshotKey(s spec) (*keySnapshot, error) // nil when the key does not exist
	deleteKey(s spec) error
	restoreKey(s spec, snap *keySnapshot) error
	exists(s spec) (bool, error) // the file or key
	removeIfEmpty(s spec) error
}

// journal is the original of what an item changed.
type journal struct {
	Item         string       `json:"item"`
	Path         string       `json:"path"`
	Format       string       `json:"format,omitempty"`
	Section      string       `json:"section,omitempty"`
	Name         string       `json:"name,omitempty"`
	Type         string       `json:"type,omitempty"`
	Action       string       `json:"action"`
	Created      bool         `json:"created,omitempty"` // the file or key did not exist
	ValueExisted bool         `json:"value_existed,omitempty"`
	Value        *value       `json:"value,omitempty"`
	Key          *keySnapshot `json:"key,omitempty"`
}

func (j *journal) spec() spec {
	return spec{id: j.Item, path: j.Path, format: j.Format, section: j.Section, name: j.Name, typ: j.Type, action: j.Action}
}

func journalPath(root, id string) string {
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(root, filepath.FromSlash(StateDir), hex.EncodeToString(sum[:16])+".json")
}

func loadJournal(root, id string) (*journal, error) {
	b, err := os.ReadFile(journalPath(root, id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the original of %s: %w", id, err)
	}
	var j journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("the journal of %s (%s) is corrupt: %w; remove it to stop managing the original", id, journalPath(root, id), err)
	}
	return &j, nil
}

func saveJournal(root string, j *journal) error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	p := journalPath(root, j.Item)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(p), err)
	}
	if err := fsutil.WriteFileAtomic(p, b, 0o600); err != nil {
		return fmt.Errorf("journal the original of %s: %w", j.Item, err)
	}
	return nil
}

func checkRoot(root string) error {
	if !filepath.IsAbs(root) {
		return fmt.Errorf("root %q is not an absolute path", root)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return fmt.Errorf("root: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("root %s is not a directory", root)
	}
	return nil
}

// backendFor picks the store an item lives in.
func (m *Manager) backendFor(root string, s spec) (backend, error) {
	if s.format == "" {
		return newRegistryBackend()
	}
	return newFileBackend(root, m.allow)
}

// Scan reports whether each item is as it should be. It changes nothing.
func (m *Manager) Scan(ctx context.Context, req *proto.ScanRequest) (*proto.ScanResponse, error) {
	if err := checkRoot(req.GetRoot()); err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	resp := &proto.ScanResponse{}
	for _, item := range req.GetItems() {
		resp.Items = append(resp.Items, m.scanItem(req.GetRoot(), item))
	}
	return resp, nil
}

func (m *Manager) scanItem(root string, item *wire.Item) *proto.ItemState {
	st := &proto.ItemState{Id: item.GetId(), Applicable: true}
	s, err := itemSpec(item)
	if err != nil {
		st.Message = err.Error()
		return st
	}
	j, err := loadJournal(root, s.id)
	if err != nil {
		st.Message = err.Error()
		return st
	}
	if s.state == wire.State_STATE_ABSENT {
		if j == nil {
			st.Compliant, st.Message = true, fmt.Sprintf("%s is not managed; nothing to restore", s.describe())
		} else {
			st.Message = fmt.Sprintf("%s is managed; the original is put back when applied", j.spec().describe())
		}
		return st
	}
	b, err := m.backendFor(root, s)
	if err != nil {
		st.Message = err.Error()
		st.Applicable = !errors.Is(err, ErrNotApplicable)
		return st
	}
	ok, msg, err := check(b, s)
	if err != nil {
		st.Message = err.Error()
		return st
	}
	if ok && j != nil && j.spec().target() != s.target() {
		ok, msg = false, fmt.Sprintf("%s; the original of %s is still to be put back", msg, j.spec().describe())
	}
	st.Compliant, st.Message = ok, msg
	return st
}

// check compares the store with what s wants.
func check(b backend, s spec) (bool, string, error) {
	switch s.action {
	case ActionSet:
		v, ok, err := b.getValue(s)
		if err != nil {
			return false, "", err
		}
		switch {
		case !ok:
			return false, fmt.Sprintf("%s is not set; want %s", s.describe(), show(s.data)), nil
		case !matches(s, v):
			return false, fmt.Sprintf("%s is %s; want %s", s.describe(), showValue(v), show(s.data)), nil
		}
		return true, fmt.Sprintf("%s is %s", s.describe(), show(s.data)), nil
	case ActionDeleteValue:
		v, ok, err := b.getValue(s)
		if err != nil {
			return false, "", err
		}
		if ok {
			return false, fmt.Sprintf("%s is %s; want it deleted", s.describe(), showValue(v)), nil
		}
		return true, fmt.Sprintf("%s is not set", s.describe()), nil
	default:
		snap, err := b.snapshotKey(s)
		if err != nil {
			return false, "", err
		}
		if snap != nil {
			return false, fmt.Sprintf("%s exists; want it absent", s.describe()), nil
		}
		return true, fmt.Sprintf("%s is absent", s.describe()), nil
	}
}

func matches(s spec, v value) bool {
	if v.Type == "" {
		return len(v.Data) == 1 && equalValue(s.typ, v.Data[0], s.data)
	}
	return v.Type == s.typ && slices.Equal(v.Data, s.data)
}

func show(data []string) string {
	if len(data) == 1 {
		return fmt.Sprintf("%q", truncate(data[0], 80))
	}
	return fmt.Sprintf("%q", data)
}

func showValue(v value) string {
	if v.Type != "" && len(v.Data) != 1 {
		return fmt.Sprintf("%s %q", v.Type, v.Data)
	}
	if len(v.Data) == 0 {
		return `""`
	}
	return show(v.Data)
}

// Apply brings one item to its state: for present, journals the original
// on the first change and then sets or deletes; for absent, puts the
// original back and forgets it.
func (m *Manager) Apply(ctx context.Context, req *proto.ApplyRequest) (*proto.ApplyResponse, error) {
	s, err := itemSpec(req.GetItem())
	if err != nil {
		return nil, err
	}
	root := req.GetRoot()
	if err := checkRoot(root); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	j, err := loadJournal(root, s.id)
	if err != nil {
		return nil, err
	}
	var restored string
	if j != nil && (s.state == wire.State_STATE_ABSENT || j.spec().target() != s.target()) {
		msg, err := m.restore(root, j)
		if err != nil {
			return nil, fmt.Errorf("put back the original of %s: %w", j.spec().describe(), err)
		}
		if s.state == wire.State_STATE_ABSENT {
			m.logger.Info("original restored", "item", s.id, "message", msg)
			return &proto.ApplyResponse{Changed: true, Message: msg}, nil
		}
		restored, j = msg+"; ", nil
	}
	if s.state == wire.State_STATE_ABSENT {
		return &proto.ApplyResponse{Message: fmt.Sprintf("%s is not managed; nothing to restore", s.describe())}, nil
	}
	b, err := m.backendFor(root, s)
	if err != nil {
		return nil, err
	}
	ok, msg, err := check(b, s)
	if err != nil {
		return nil, err
	}
	if ok {
		return &proto.ApplyResponse{Changed: restored != "", Message: restored + msg}, nil
	}
	if j == nil {
		if j, err = original(b, s); err != nil {
			return nil, fmt.Errorf("read the original of %s: %w", s.describe(), err)
		}
		if err := saveJournal(root, j); err != nil {
			return nil, err
		}
	}
	switch s.action {
	case ActionSet:
		if err := b.setValue(s, value{Type: s.typ, Data: s.data}); err != nil {
			return nil, fmt.Errorf("set %s: %w", s.describe(), err)
		}
		msg = fmt.Sprintf("set %s to %s (%s)", s.describe(), show(s.data), msg)
	case ActionDeleteValue:
		if _, err := b.deleteValue(s); err != nil {
			return nil, fmt.Errorf("delete %s: %w", s.describe(), err)
		}
		msg = fmt.Sprintf("deleted %s (%s)", s.describe(), msg)
	default:
		if err := b.deleteKey(s); err != nil {
			return nil, fmt.Errorf("delete %s: %w", s.describe(), err)
		}
		msg = fmt.Sprintf("deleted %s", s.describe())
	}
	m.logger.Info("setting changed", "item", s.id, "message", msg)
	return &proto.ApplyResponse{Changed: true, Message: restored + msg}, nil
}

// original reads what the item is about to change.
func original(b backend, s spec) (*journal, error) {
	j := &journal{Item: s.id, Path: s.path, Format: s.format, Section: s.section, Name: s.name, Type: s.typ, Action: s.action}
	exists, err := b.exists(s)
	if err != nil {
		return nil, err
	}
	j.Created = !exists
	if s.action == ActionDeleteKey {
		if j.Key, err = b.snapshotKey(s); err != nil {
			return nil, err
		}
		return j, nil
	}
	v, ok, err := b.getValue(s)
	if err != nil {
		return nil, err
	}
	if ok {
		j.ValueExisted, j.Value = true, &v
	}
	return j, nil
}

// restore puts back what j recorded and removes the journal.
func (m *Manager) restore(root string, j *journal) (string, error) {
	s := j.spec()
	b, err := m.backendFor(root, s)
	if err != nil {
		return "", err
	}
	var msg string
	switch {
	case s.action == ActionDeleteKey && j.Key != nil:
		if err := b.restoreKey(s, j.Key); err != nil {
			return "", err
		}
		msg = fmt.Sprintf("restored %s", s.describe())
	case s.action == ActionDeleteKey:
		msg = fmt.Sprintf("%s did not exist before; nothing to restore", s.describe())
	case j.ValueExisted && j.Value != nil:
		if err := b.setValue(s, *j.Value); err != nil {
			return "", err
		}
		msg = fmt.Sprintf("restored %s to its original %s", s.describe(), showValue(*j.Value))
	default:
		if _, err := b.deleteValue(s); err != nil {
			return "", err
		}
		msg = fmt.Sprintf("removed %s, which was not set before", s.describe())
	}
	if j.Created {
		if err := b.removeIfEmpty(s); err != nil {
			return "", err
		}
	}
	if err := os.Remove(journalPath(root, j.Item)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("forget the original of %s: %w", j.Item, err)
	}
	return msg, nil
}
