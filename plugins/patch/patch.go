// Package patch is the "patch" plugin: a patch from the coordinator's
// catalog fixes a package by bringing it to a fixed version. The plugin
// scans the package manifests in its root (those the package plugin
// writes) and reports each patch installed, missing or not applicable (the
// package is not there); applying it backs up the package's current files
// and installs the fixed version through the package plugin's code, so the
// same confinement, journal and verification hold. Removing a patch whose
// catalog entry allows rollback puts the backed-up version back.
//
// It does not decide which patches apply: the coordinator's approvals do.
package patch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/version"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins"
	"github.com/outposthq/outpost/plugins/packages"
	"github.com/outposthq/outpost/plugins/proto"
)

// Kind is the item kind this plugin manages.
const Kind = "patch"

// Version is the plugin's version, reported by Describe.
var Version = "0.1.0"

// StateDir is where, inside the root, the records and backups of applied
// patches are kept.
const StateDir = "var/lib/outpost/patches"

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Manager implements plugins.Plugin for patches.
type Manager struct {
	logger *slog.Logger
	pkgs   *packages.Manager
	mu     sync.Mutex
}

var _ plugins.Plugin = (*Manager)(nil)

// New returns a Manager.
func New(logger *slog.Logger) *Manager {
	return &Manager{logger: logger.With("component", "patch"), pkgs: packages.New(logger)}
}

// Describe says what this plugin is.
func (m *Manager) Describe(context.Context, *proto.DescribeRequest) (*proto.DescribeResponse, error) {
	return &proto.DescribeResponse{Kind: Kind, Version: Version, Capabilities: []string{"scan", "install", "rollback"}}, nil
}

// record is what the plugin keeps about a patch it applied.
type record struct {
	Patch           string `json:"patch"`
	Package         string `json:"package"`
	PreviousVersion string `json:"previous_version"`
	Prefix          string `json:"prefix"`
	Backup          string `json:"backup"` // file name in StateDir
}

type spec struct {
	id    string
	p     *wire.PatchSpec
	state wire.State
	art   *wire.Artifact
}

func itemSpec(item *wire.Item) (spec, error) {
	if item.GetKind() != Kind {
		return spec{}, fmt.Errorf("item %s has kind %q; this plugin manages %q", item.GetId(), item.GetKind(), Kind)
	}
	p := item.GetPatch()
	if p == nil {
		return spec{}, fmt.Errorf("item %s has no patch spec", item.GetId())
	}
	if !idRE.MatchString(p.GetId()) {
		return spec{}, fmt.Errorf("item %s: patch id %q is invalid", item.GetId(), p.GetId())
	}
	if p.GetPackage() == "" || p.GetFixedVersion() == "" {
		return spec{}, fmt.Errorf("patch %s names no package or fixed version", p.GetId())
	}
	return spec{id: item.GetId(), p: p, state: item.GetState(), art: item.GetArtifact()}, nil
}

func dir(root string) string { return filepath.Join(root, filepath.FromSlash(StateDir)) }

func loadRecord(root, id string) (*record, error) {
	b, err := os.ReadFile(filepath.Join(dir(root), id+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the record of patch %s: %w", id, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("the record of patch %s is corrupt: %w", id, err)
	}
	if err := r.check(id); err != nil {
		return nil, fmt.Errorf("the record of patch %s is corrupt: %w", id, err)
	}
	return &r, nil
}

// backupName is the file in StateDir that holds the backup of patch id.
func backupName(id string) string { return id + ".backup.tar.gz" }

// check refuses a record that could point the plugin at files that are
// not its own: the state directory is the plugin's, but a record is still
// a file on disk, and the backup it names is installed, then deleted.
func (r *record) check(id string) error {
	if r.Patch != id {
		return fmt.Errorf("it names patch %q", r.Patch)
	}
	if r.Backup != "" && r.Backup != backupName(id) {
		return fmt.Errorf("it names the backup %q, not %s", r.Backup, backupName(id))
	}
	return nil
}

// forget removes the record of patch id, then its backup: a kill between
// the two leaves a backup no record names (a file too many), not a record
// whose backup is gone.
func forget(root, id string) error {
	if err := os.Remove(filepath.Join(dir(root), id+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("forget patch %s: %w", id, err)
	}
	if err := os.Remove(filepath.Join(dir(root), backupName(id))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("forget the backup of patch %s: %w", id, err)
	}
	return nil
}

// notPatched says why the version patch s installed is not there, or ""
// when it is: the package at the fixed version, under the prefix it was
// patched under. Rolling back puts the version before back only over it.
func notPatched(mf *packages.Manifest, s spec, rec *record) string {
	switch {
	case mf == nil:
		return fmt.Sprintf("%s is not installed", rec.Package)
	case mf.Version != s.p.GetFixedVersion():
		return fmt.Sprintf("%s is %s, not %s, the version the patch installed", mf.Name, mf.Version, s.p.GetFixedVersion())
	case mf.Prefix != rec.Prefix:
		return fmt.Sprintf("%s is under %s now, not %s", mf.Name, mf.Prefix, rec.Prefix)
	}
	return ""
}

// Scan reports each patch installed (compliant), missing, or not
// applicable when its package is not installed.
func (m *Manager) Scan(ctx context.Context, req *proto.ScanRequest) (*proto.ScanResponse, error) {
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
	mf, err := packages.Installed(root, s.p.GetPackage())
	if err != nil {
		st.Message = err.Error()
		return st
	}
	rec, err := loadRecord(root, s.p.GetId())
	if err != nil {
		st.Message = err.Error()
		return st
	}
	if s.state == wire.State_STATE_ABSENT {
		switch {
		case rec == nil:
			st.Compliant, st.Message = true, fmt.Sprintf("patch %s was not applied by outpost; nothing to roll back", s.p.GetId())
		case rec.Package != s.p.GetPackage():
			st.Message = fmt.Sprintf("patch %s was applied to %s; rolling back restores %s %s", s.p.GetId(), rec.Package, rec.Package, rec.PreviousVersion)
		default:
			if why := notPatched(mf, s, rec); why != "" {
				st.Message = fmt.Sprintf("patch %s is no longer installed (%s): nothing to roll back; the next apply forgets its record and backup", s.p.GetId(), why)
			} else {
				st.Message = fmt.Sprintf("patch %s is installed; rolling back restores %s %s", s.p.GetId(), rec.Package, rec.PreviousVersion)
			}
		}
		return st
	}
	if mf == nil {
		st.Applicable = false
		st.Message = fmt.Sprintf("not applicable: %s is not installed", s.p.GetPackage())
		return st
	}
	st.InstalledVersion = mf.Version
	if version.Compare(mf.Version, s.p.GetFixedVersion()) >= 0 {
		if hookPending(mf, s) {
			st.Message = fmt.Sprintf("missing: %s %s is installed, but its post-install hook has not succeeded; it runs again at the next apply", mf.Name, mf.Version)
			return st
		}
		st.Compliant = true
		st.Message = fmt.Sprintf("installed: %s %s has the fix of %s", mf.Name, mf.Version, s.p.GetId())
		return st
	}
	st.Message = fmt.Sprintf("missing: %s %s is installed, %s fixes it in %s", mf.Name, mf.Version, s.p.GetId(), s.p.GetFixedVersion())
	return st
}

// Apply installs a patch (the fixed version of its package) or rolls it back.
func (m *Manager) Apply(ctx context.Context, req *proto.ApplyRequest) (*proto.ApplyResponse, error) {
	s, err := itemSpec(req.GetItem())
	if err != nil {
		return nil, err
	}
	root := req.GetRoot()
	m.mu.Lock()
	defer m.mu.Unlock()
	// What is installed decides what to do: a change to a package that a
	// kill cut short is finished or undone first, as the package plugin
	// does before anything.
	if err := m.pkgs.Recover(ctx, root); err != nil {
		return nil, fmt.Errorf("patch %s: %w", s.p.GetId(), err)
	}
	if s.state == wire.State_STATE_ABSENT {
		return m.rollback(ctx, root, s)
	}
	mf, err := packages.Installed(root, s.p.GetPackage())
	if err != nil {
		return nil, err
	}
	if mf == nil {
		return nil, fmt.Errorf("patch %s is not applicable: %s is not installed", s.p.GetId(), s.p.GetPackage())
	}
	if version.Compare(mf.Version, s.p.GetFixedVersion()) >= 0 && !hookPending(mf, s) {
		return &proto.ApplyResponse{Message: fmt.Sprintf("installed: %s %s has the fix", mf.Name, mf.Version)}, nil
	}
	if hookPending(mf, s) {
		// The fixed version is in place and its backup and record made;
		// the package code runs the hook again.
		pkgItem := &wire.Item{Id: "package/" + mf.Name, Kind: packages.Kind, State: wire.State_STATE_PRESENT, Artifact: s.art,
			Spec: &wire.Item_Package{Package: &wire.PackageSpec{Name: mf.Name, Version: mf.Version, Prefix: mf.Prefix}}}
		if _, err := m.pkgs.Apply(ctx, &proto.ApplyRequest{Root: root, Item: pkgItem, ArtifactPath: req.GetArtifactPath()}); err != nil {
			return nil, fmt.Errorf("patch %s: %w", s.p.GetId(), err)
		}
		return &proto.ApplyResponse{Changed: true, RebootRequired: s.p.GetRebootRequired(),
			Message: fmt.Sprintf("installed patch %s: the post-install hook of %s %s succeeded on retry", s.p.GetId(), mf.Name, mf.Version)}, nil
	}
	if req.GetArtifactPath() == "" {
		return nil, fmt.Errorf("patch %s has no artifact to install; the catalog entry must name one", s.p.GetId())
	}
	if err := os.MkdirAll(dir(root), 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir(root), err)
	}
	rec := &record{Patch: s.p.GetId(), Package: mf.Name, PreviousVersion: mf.Version, Prefix: mf.Prefix, Backup: backupName(s.p.GetId())}
	old, err := loadRecord(root, s.p.GetId())
	if err != nil {
		return nil, err
	}
	if old != nil && old.Package == mf.Name && old.PreviousVersion == mf.Version && old.Prefix == mf.Prefix &&
		old.Backup != "" && exists(filepath.Join(dir(root), old.Backup)) {
		// Applied before, and not done (killed in the middle of the
		// install, or it failed): the backup made then is of the version
		// before the patch, which is still the one installed, and the
		// only copy of it; its files may be half replaced now. It is
		// kept, not made again. (A backup of another version is of an
		// earlier application, and is replaced.)
		rec = old
	} else if s.p.GetRollbackAllowed() {
		if err := packages.Backup(root, mf, filepath.Join(dir(root), rec.Backup)); err != nil {
			return nil, fmt.Errorf("patch %s: %w; nothing changed", s.p.GetId(), err)
		}
	} else {
		rec.Backup = ""
	}
	b, _ := json.MarshalIndent(rec, "", "  ")
	if err := fsutil.WriteFileAtomic(filepath.Join(dir(root), s.p.GetId()+".json"), b, 0o600); err != nil {
		return nil, fmt.Errorf("record patch %s: %w", s.p.GetId(), err)
	}
	if rec.Backup == "" {
		// A backup of an earlier application that allowed rollback.
		os.Remove(filepath.Join(dir(root), backupName(s.p.GetId())))
	}
	pkgItem := &wire.Item{Id: "package/" + mf.Name, Kind: packages.Kind, State: wire.State_STATE_PRESENT, Artifact: s.art,
		Spec: &wire.Item_Package{Package: &wire.PackageSpec{Name: mf.Name, Version: s.p.GetFixedVersion(), Prefix: mf.Prefix}}}
	if _, err := m.pkgs.Apply(ctx, &proto.ApplyRequest{Root: root, Item: pkgItem, ArtifactPath: req.GetArtifactPath()}); err != nil {
		// An install that failed may have changed the package all the
		// same (the fixed version committed and its post-install hook
		// failed, files put in place before an error): the record of a
		// backup stays, as for a kill, so that the retry keeps it and
		// the rollback puts the version before back.
		if rec.Backup == "" {
			os.Remove(filepath.Join(dir(root), s.p.GetId()+".json"))
		}
		return nil, fmt.Errorf("patch %s: %w", s.p.GetId(), err)
	}
	msg := fmt.Sprintf("installed patch %s: %s %s → %s", s.p.GetId(), mf.Name, mf.Version, s.p.GetFixedVersion())
	m.logger.Info("patch installed", "patch", s.p.GetId(), "package", mf.Name, "from", mf.Version, "to", s.p.GetFixedVersion())
	return &proto.ApplyResponse{Changed: true, RebootRequired: s.p.GetRebootRequired(), Message: msg}, nil
}

func (m *Manager) rollback(ctx context.Context, root string, s spec) (*proto.ApplyResponse, error) {
	rec, err := loadRecord(root, s.p.GetId())
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return &proto.ApplyResponse{Message: fmt.Sprintf("patch %s was not applied by outpost; nothing to roll back", s.p.GetId())}, nil
	}
	mf, err := packages.Installed(root, rec.Package)
	if err != nil {
		return nil, fmt.Errorf("roll back patch %s: %w", s.p.GetId(), err)
	}
	if why := notPatched(mf, s, rec); why != "" {
		// The version the patch installed has gone since (removed,
		// replaced, or never committed): the version before is not put
		// back over what is there now.
		if err := forget(root, s.p.GetId()); err != nil {
			return nil, err
		}
		return &proto.ApplyResponse{Message: fmt.Sprintf("patch %s is no longer installed (%s): nothing to roll back", s.p.GetId(), why)}, nil
	}
	if !s.p.GetRollbackAllowed() || rec.Backup == "" {
		return nil, fmt.Errorf("patch %s does not allow rollback; it stays installed (remove it from the policy instead of setting state absent)", s.p.GetId())
	}
	backup := filepath.Join(dir(root), rec.Backup)
	sum, err := hashFile(backup)
	if err != nil {
		return nil, fmt.Errorf("roll back patch %s: the backup is gone: %w", s.p.GetId(), err)
	}
	pkgItem := &wire.Item{Id: "package/" + rec.Package, Kind: packages.Kind, State: wire.State_STATE_PRESENT,
		Artifact: &wire.Artifact{Sha256: sum},
		Spec:     &wire.Item_Package{Package: &wire.PackageSpec{Name: rec.Package, Version: rec.PreviousVersion, Prefix: rec.Prefix}}}
	if _, err := m.pkgs.Apply(ctx, &proto.ApplyRequest{Root: root, Item: pkgItem, ArtifactPath: backup}); err != nil {
		return nil, fmt.Errorf("roll back patch %s: %w", s.p.GetId(), err)
	}
	if err := forget(root, s.p.GetId()); err != nil {
		return nil, err
	}
	return &proto.ApplyResponse{Changed: true, RebootRequired: s.p.GetRebootRequired(),
		Message: fmt.Sprintf("rolled back patch %s: %s is %s again", s.p.GetId(), rec.Package, rec.PreviousVersion)}, nil
}

// hookPending reports whether mf is the fixed version of s with a
// post-install hook that has yet to succeed (it failed, or the plugin was
// killed while it ran): the patch is not done until it has, as a package
// item is not.
func hookPending(mf *packages.Manifest, s spec) bool {
	return mf.PostInstallPending && mf.Version == s.p.GetFixedVersion()
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
