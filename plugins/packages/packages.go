// Package packages is the "package" plugin: it installs software packages,
// gzip'd tars, under a prefix in the plugin's root (/opt/<name> unless the
// policy says otherwise), records every file it wrote in a manifest under
// /var/lib/outpost/packages, and from that manifest finds drift, upgrades,
// downgrades and removes exactly what it installed.
//
// Archives are untrusted: each is validated in full before anything is
// written, and refused as a whole if any entry could land outside the prefix
// or is anything but a file, directory or symlink (see ValidateArchive), or
// if it would overwrite a file of another installed package (compared as
// written and as resolved through symlinks; a prefix that leads into
// another package through a symlink is refused too). Setuid and
// setgid files are refused, not stripped: a package that needs them is not
// one to install silently altered. A file at a package's path that belongs
// to no package is overwritten, and removed with the package. Every change
// is journaled first, so that one cut short by a crash is finished or undone
// by the next Apply.
//
// A package may carry pre- and post-install hooks (see HookPreInstall), run
// with a time limit. An item whose artifact is a .deb goes through dpkg
// instead, and only when the plugin's root is the real system (see deb.go).
// It is not an OS package manager front end: no dependency resolution, no
// rpm. The agent runs it as a subprocess (cmd/outpost-plugin-package)
// through the contract in package plugins.
package packages

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins"
	"github.com/outposthq/outpost/plugins/proto"
)

// Version is the plugin's version, reported by Describe.
var Version = "0.1.0"

// Manager implements plugins.Plugin for packages.
type Manager struct {
	logger      *slog.Logger
	limits      Limits
	now         func() time.Time
	hookTimeout time.Duration
	dpkgDir     string        // where dpkg and dpkg-query are; "" means $PATH
	lockWait    time.Duration // how long Apply waits for another process's lock on the root

	// mu makes changes one at a time: checking that a package's files
	// collide with no other package's needs the others to hold still. The
	// lock file in the state directory (see lock) does the same between
	// processes.
	mu sync.Mutex

	// hook, in tests, is called at points of an install ("file" after each
	// file is written, "commit" before the manifest is); an error fails the
	// install there, a panic stands in for a crash.
	hook func(point, path string) error
}

func (m *Manager) testHook(point, path string) error {
	if m.hook == nil {
		return nil
	}
	return m.hook(point, path)
}

var _ plugins.Plugin = (*Manager)(nil)

// Option changes a Manager's defaults.
type Option func(*Manager)

// WithLimits sets the bounds archives must stay within.
func WithLimits(l Limits) Option { return func(m *Manager) { m.limits = l } }

// New returns a Manager with DefaultLimits.
func New(logger *slog.Logger, opts ...Option) *Manager {
	m := &Manager{
		logger:      logger.With("component", "packages"),
		limits:      DefaultLimits(),
		now:         time.Now,
		hookTimeout: DefaultHookTimeout,
		lockWait:    DefaultLockWait,
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Describe says what this plugin is.
func (m *Manager) Describe(context.Context, *proto.DescribeRequest) (*proto.DescribeResponse, error) {
	return &proto.DescribeResponse{
		Kind:         Kind,
		Version:      Version,
		Capabilities: []string{"install", "upgrade", "downgrade", "remove", "verify", "tar.gz", "hooks", "deb"},
	}, nil
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

// Scan reports, for each package item, whether what is on disk is what the
// item wants, and if not, what differs. It changes nothing.
func (m *Manager) Scan(ctx context.Context, req *proto.ScanRequest) (*proto.ScanResponse, error) {
	if err := checkRoot(req.GetRoot()); err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st := store{root: req.GetRoot()}
	resp := &proto.ScanResponse{Items: make([]*proto.ItemState, 0, len(req.GetItems()))}
	for _, item := range req.GetItems() {
		resp.Items = append(resp.Items, m.scanItem(ctx, st, item))
	}
	return resp, nil
}

// maxProblems bounds how many differences one scan message lists.
const maxProblems = 5

func (m *Manager) scanItem(ctx context.Context, st store, item *wire.Item) *proto.ItemState {
	state := &proto.ItemState{Id: item.GetId()}
	if item.GetKind() != Kind {
		state.Message = fmt.Sprintf("kind %q is not managed by the package plugin", item.GetKind())
		return state
	}
	state.Applicable = true
	s, err := itemSpec(item)
	if err != nil {
		state.Message = err.Error()
		return state
	}
	if isDeb(item) {
		return m.scanDeb(ctx, st.root, s)
	}
	if j, err := st.loadJournal(s.name); err != nil || j != nil {
		state.Message = fmt.Sprintf("an interrupted change to %s is pending; the next apply finishes or undoes it", s.name)
		if err != nil {
			state.Message = err.Error()
		}
		return state
	}
	cur, err := st.load(s.name)
	if err != nil {
		state.Message = err.Error()
		return state
	}
	if cur != nil {
		state.InstalledVersion = cur.Version
	}
	if s.state == wire.State_STATE_ABSENT {
		if cur == nil {
			state.Compliant, state.Message = true, fmt.Sprintf("%s is not installed", s.name)
		} else {
			state.Message = fmt.Sprintf("%s %s is installed; want it absent", s.name, cur.Version)
		}
		return state
	}
	if cur == nil {
		state.Message = fmt.Sprintf("%s is not installed", s.name)
		return state
	}
	var problems []string
	if cur.Version != s.version {
		problems = append(problems, fmt.Sprintf("installed version %s, want %s", cur.Version, s.version))
	}
	if s.sha256 != "" && cur.ArtifactSHA256 != s.sha256 {
		problems = append(problems, fmt.Sprintf("installed from artifact sha256 %s, want %s", short(cur.ArtifactSHA256), short(s.sha256)))
	}
	if cur.Prefix != s.prefix {
		problems = append(problems, fmt.Sprintf("installed under %s, want %s", cur.Prefix, s.prefix))
	}
	if len(problems) == 0 {
		problems = verify(ctx, st.root, cur)
	}
	if why := st.pendingPostInstall(cur); len(problems) == 0 && why != "" {
		problems = append(problems, "post-install hook has not succeeded: "+why)
	}
	if len(problems) == 0 {
		state.Compliant, state.Message = true, fmt.Sprintf("%s %s is installed", s.name, s.version)
		return state
	}
	state.Message = summarize(problems)
	return state
}

func summarize(problems []string) string {
	if len(problems) <= maxProblems {
		return strings.Join(problems, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(problems[:maxProblems], "; "), len(problems)-maxProblems)
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// Recover finishes or undoes any change to the packages under root that a
// crash or a kill cut short, as every Apply does first; it changes nothing
// else. The patch plugin calls it before it reads a package's manifest to
// decide what to do.
func (m *Manager) Recover(ctx context.Context, root string) error {
	if err := checkRoot(root); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st := store{root: root}
	if names, err := st.names(".journal"); err != nil || len(names) == 0 {
		return err
	}
	unlock, err := m.lock(ctx, st)
	if err != nil {
		return err
	}
	defer unlock()
	if err := m.recoverAll(ctx, st); err != nil {
		return fmt.Errorf("finish interrupted changes: %w", err)
	}
	return nil
}

// Apply installs, upgrades, downgrades, repairs or removes one package.
// First it finishes or undoes any change a crash cut short. It holds the
// root's lock throughout, so that no other process changes the packages
// under the same root meanwhile (a .deb goes through dpkg, which has its
// own lock).
func (m *Manager) Apply(ctx context.Context, req *proto.ApplyRequest) (*proto.ApplyResponse, error) {
	s, err := itemSpec(req.GetItem())
	if err != nil {
		return nil, err
	}
	if err := checkRoot(req.GetRoot()); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if isDeb(req.GetItem()) {
		return m.applyDeb(ctx, req.GetRoot(), s, req.GetArtifactPath())
	}
	st := store{root: req.GetRoot()}
	unlock, err := m.lock(ctx, st)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := m.recoverAll(ctx, st); err != nil {
		return nil, fmt.Errorf("finish interrupted changes: %w", err)
	}
	if s.state == wire.State_STATE_ABSENT {
		resp, err := m.remove(st, s)
		if err != nil {
			return nil, fmt.Errorf("remove %s: %w", s.name, err)
		}
		return resp, nil
	}
	resp, err := m.install(ctx, st, s, req.GetArtifactPath())
	if err != nil {
		return nil, fmt.Errorf("install %s %s: %w", s.name, s.version, err)
	}
	return resp, nil
}
