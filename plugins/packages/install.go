package packages

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/plugins/proto"
)

// checkModes is false where permission bits mean little (Windows).
const checkModes = runtime.GOOS != "windows"

// install brings package s to the wanted version from the artifact at
// artifactPath: validate the whole archive, check it against the disk and
// the other packages, journal, extract, drop the old version's leftovers,
// commit the manifest.
func (m *Manager) install(ctx context.Context, st store, s spec, artifactPath string) (*proto.ApplyResponse, error) {
	old, err := st.load(s.name)
	if err != nil {
		return nil, err
	}
	if s.sha256 == "" && artifactPath != "" {
		if s.sha256, err = hashFile(artifactPath); err != nil {
			return nil, err
		}
	}
	var repair []string
	if old != nil && old.Version == s.version && old.Prefix == s.prefix && old.ArtifactSHA256 == s.sha256 && s.sha256 != "" {
		repair = verify(ctx, st.root, old)
		if len(repair) == 0 {
			if st.pendingPostInstall(old) != "" {
				if err := m.postInstall(ctx, st, s, old); err != nil {
					return nil, err
				}
				return &proto.ApplyResponse{Changed: true, Message: fmt.Sprintf("%s %s: post-install hook succeeded on retry", s.name, s.version)}, nil
			}
			return &proto.ApplyResponse{Message: fmt.Sprintf("%s %s is installed", s.name, s.version)}, nil
		}
	}
	if artifactPath == "" {
		return nil, errors.New("no artifact_path given; the agent must fetch the artifact before installing")
	}

	f, err := os.Open(artifactPath)
	if err != nil {
		return nil, fmt.Errorf("open artifact: %w", err)
	}
	defer f.Close()
	plan, err := m.validate(ctx, f, s)
	if err != nil {
		return nil, err
	}

	others, err := st.list()
	if err != nil {
		return nil, err
	}
	lay, err := preflight(st.root, s, plan, old, others)
	if err != nil {
		return nil, err
	}
	if err := m.preInstall(ctx, st.root, s, artifactPath, plan); err != nil {
		return nil, fmt.Errorf("%w; nothing was installed", err)
	}
	nu := newManifest(s, plan, old, lay)
	j := &journal{Op: opInstall, Old: old, New: nu}
	if err := st.saveJournal(s.name, j); err != nil {
		return nil, err
	}
	if err := m.extract(ctx, st.root, s, plan, lay, f); err != nil {
		// Undo now rather than at the next Apply: the disk is as it was,
		// bar the old files that were already overwritten.
		if uerr := m.undoInstall(st, j); uerr != nil {
			m.logger.Error("undo failed install; the next apply retries", "package", s.name, "error", uerr)
		}
		return nil, err
	}
	if err := m.testHook("commit", nu.Name); err != nil {
		return nil, err
	}
	if err := m.finishInstall(st, old, nu); err != nil {
		return nil, err
	}
	if err := m.postInstall(ctx, st, s, nu); err != nil {
		return nil, fmt.Errorf("installed, but %w; it runs again at the next apply", err)
	}

	files := len(nu.Files)
	m.logger.Info("package installed", "package", s.name, "version", s.version, "prefix", s.prefix, "files", files)
	msg := fmt.Sprintf("installed %s %s (%d files)", s.name, s.version, files)
	switch {
	case len(repair) > 0:
		msg = fmt.Sprintf("repaired %s %s: %s", s.name, s.version, summarize(repair))
	case old != nil && old.Version != s.version:
		msg = fmt.Sprintf("replaced %s %s with %s", s.name, old.Version, s.version)
	case old != nil:
		msg = fmt.Sprintf("reinstalled %s %s", s.name, s.version)
	}
	return &proto.ApplyResponse{Changed: true, Message: msg}, nil
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("open artifact: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read artifact %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// validate reads the artifact once: it must have the wanted SHA-256 and
// size, and be an archive that ValidateArchive accepts. It stops when ctx
// ends.
func (m *Manager) validate(ctx context.Context, f *os.File, s spec) (*Plan, error) {
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(ctxReader{ctx: ctx, r: f}, h)}
	plan, verr := ValidateArchive(cr, m.limits)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("install interrupted: %w", err)
	}
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return nil, fmt.Errorf("read artifact %s: %w", f.Name(), err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); s.sha256 != "" && sum != s.sha256 {
		return nil, fmt.Errorf("artifact %s has sha256 %s, want %s", f.Name(), sum, s.sha256)
	}
	if s.size > 0 && cr.n != s.size {
		return nil, fmt.Errorf("artifact %s has %d bytes, want %d", f.Name(), cr.n, s.size)
	}
	return plan, verr
}

// ctxReader fails once ctx is done, so that reading a large artifact stops
// within one buffer of it when the install is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, fmt.Errorf("install interrupted: %w", err)
	}
	return c.r.Read(p)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// layout is what installing a plan changes besides writing its files.
type layout struct {
	outside []string        // the prefix and directories above it to create, root-relative, top first
	create  map[string]bool // directories inside the prefix to create, prefix-relative
	replace map[string]bool // prefix-relative paths where a file or symlink of the old version makes way for a directory
}

// created lists the directories the install creates, relative to the root.
func (l *layout) created(prefixRel string) []string {
	out := append([]string(nil), l.outside...)
	for d := range l.create {
		out = append(out, prefixRel+"/"+d)
	}
	sort.Strings(out)
	return out
}

// preflight checks, before anything is written, that the plan's files
// collide with no other package's and that nothing on disk is in the way.
func preflight(root string, s spec, plan *Plan, old *Manifest, others []*Manifest) (*layout, error) {
	prefixRel := s.prefixRel()
	if err := checkCollisions(root, s, plan, others); err != nil {
		return nil, err
	}
	lay := &layout{create: map[string]bool{}, replace: map[string]bool{}}

	// The prefix and what is above it are the host's: symlinks there (/opt
	// pointing to /var/opt) are followed.
	missing := false
	elems := strings.Split(prefixRel, "/")
	for i := range elems {
		d := strings.Join(elems[:i+1], "/")
		if !missing {
			fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(d)))
			switch {
			case errors.Is(err, fs.ErrNotExist):
				missing = true
			case err != nil:
				return nil, fmt.Errorf("prefix %s: %w", s.prefix, err)
			case !fi.IsDir():
				return nil, fmt.Errorf("prefix %s: /%s is not a directory", s.prefix, d)
			}
		}
		if missing {
			lay.outside = append(lay.outside, d)
		}
	}
	for _, e := range plan.Entries {
		if e.Type == TypeDir && missing {
			lay.create[e.Path] = true
		}
	}
	if missing {
		return lay, nil
	}

	owned := map[string]bool{}
	if old != nil {
		for _, f := range old.Files {
			owned[f.Path] = true
		}
	}
	pr, err := os.OpenRoot(filepath.Join(root, filepath.FromSlash(prefixRel)))
	if err != nil {
		return nil, fmt.Errorf("prefix %s: %w", s.prefix, err)
	}
	defer pr.Close()
	for _, e := range plan.Entries {
		if dir := path.Dir(e.Path); dir != "." && lay.create[dir] {
			if e.Type == TypeDir {
				lay.create[e.Path] = true
			}
			continue
		}
		fi, err := pr.Lstat(filepath.FromSlash(e.Path))
		full := prefixRel + "/" + e.Path
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if e.Type == TypeDir {
				lay.create[e.Path] = true
			}
		case err != nil:
			return nil, fmt.Errorf("check /%s: %w", full, err)
		case e.Type == TypeDir && fi.IsDir():
		case e.Type == TypeDir && owned[full]:
			lay.replace[e.Path], lay.create[e.Path] = true, true
		case e.Type == TypeDir:
			return nil, fmt.Errorf("/%s is in the way: the package has a directory there; move it away", full)
		case fi.IsDir():
			return nil, fmt.Errorf("/%s is a directory; the package has a %s there; move it away", full, e.Type)
		}
	}
	return lay, nil
}

// checkCollisions refuses a plan that would write a path another installed
// package owns, as a file or as a directory holding its files, or whose
// prefix leads into another package through a symlink.
//
// Paths are compared as text and also as the places they resolve to on
// disk: the prefix and what is above it are followed through symlinks, so
// /opt/b may be another name for /opt/a/real. A prefix that passes through
// a file (a symlink) of another package is refused outright, as that
// package may point it elsewhere at its next upgrade, and a prefix that
// only through symlinks lies inside, or holds, another package's prefix
// is refused too: neither manifest would know the other's files are there.
func checkCollisions(root string, s spec, plan *Plan, others []*Manifest) error {
	files := map[string]string{} // path → package
	dirs := map[string]string{}  // directories above other packages' files → package
	var rivals []*Manifest
	for _, o := range others {
		if o.Name == s.name {
			continue
		}
		rivals = append(rivals, o)
		for _, f := range o.Files {
			files[f.Path] = o.Name
			for _, d := range ancestors(f.Path) {
				dirs[d] = o.Name
			}
		}
	}
	prefixRel := s.prefixRel()
	for _, e := range plan.Entries {
		full := prefixRel + "/" + e.Path
		if owner, ok := files[full]; ok {
			return fmt.Errorf("archive entry %s would overwrite /%s, which belongs to package %s", e.Path, full, owner)
		}
		if owner, ok := dirs[full]; ok && e.Type != TypeDir {
			return fmt.Errorf("archive entry %s would replace /%s, which holds files of package %s", e.Path, full, owner)
		}
	}
	if len(rivals) == 0 {
		return nil
	}

	r := newDiskPlaces(root)
	resolvedFiles := map[string]string{} // where other packages' files are on disk → package
	resolvedDirs := map[string]string{}  // directories above them → package
	shown := map[string]string{}         // where → a package's own path for it
	for _, o := range rivals {
		for _, f := range o.Files {
			at := r.place(f.Path)
			resolvedFiles[at], shown[at] = o.Name, f.Path
			for d := path.Dir(at); d != path.Dir(d); d = path.Dir(d) {
				resolvedDirs[d] = o.Name
			}
		}
	}
	for _, d := range append([]string{prefixRel}, ancestors(prefixRel)...) {
		if owner, ok := files[d]; ok {
			return fmt.Errorf("prefix %s passes through /%s, which belongs to package %s; choose a prefix that does not lead into another package", s.prefix, d, owner)
		}
		if owner, ok := resolvedFiles[r.place(d)]; ok {
			return fmt.Errorf("prefix %s passes through /%s (through symlinks, /%s), which belongs to package %s; choose a prefix that does not lead into another package", s.prefix, d, shown[r.place(d)], owner)
		}
	}
	mine := r.dir(prefixRel)
	for _, o := range rivals {
		theirs := r.dir(o.prefixRel())
		switch {
		case within(mine, theirs) && !within(prefixRel, o.prefixRel()):
			return fmt.Errorf("prefix %s lies, through symlinks, inside %s, the prefix of package %s; choose a prefix that does not lead into another package", s.prefix, o.Prefix, o.Name)
		case within(theirs, mine) && !within(o.prefixRel(), prefixRel):
			return fmt.Errorf("prefix %s holds, through symlinks, %s, the prefix of package %s; choose a prefix that does not lead into another package", s.prefix, o.Prefix, o.Name)
		}
	}
	for _, e := range plan.Entries {
		full := prefixRel + "/" + e.Path
		at := r.place(full)
		if owner, ok := resolvedFiles[at]; ok {
			return fmt.Errorf("archive entry %s would overwrite /%s (through symlinks, /%s), which belongs to package %s", e.Path, full, shown[at], owner)
		}
		if owner, ok := resolvedDirs[at]; ok && e.Type != TypeDir {
			return fmt.Errorf("archive entry %s would replace /%s, which (through symlinks) holds files of package %s", e.Path, full, owner)
		}
	}
	return nil
}

// within reports whether p is dir or lies inside it (slash-separated).
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/") || dir == "/"
}

// diskPlaces finds where root-relative paths are on disk, following symlinks
// as the system does when the plugin writes through them (an absolute
// link leads where it says, even outside the root: the prefix and what is
// above it are the host's). Results are absolute, slash-separated, and
// remembered per directory, as many files share one.
type diskPlaces struct {
	root string
	dirs map[string]string
}

func newDiskPlaces(root string) *diskPlaces {
	return &diskPlaces{root: root, dirs: map[string]string{}}
}

// dir returns where directory rel is: resolved as far as it exists, the
// rest appended as written.
func (r *diskPlaces) dir(rel string) string {
	if rel == "" {
		rel = "."
	}
	if at, ok := r.dirs[rel]; ok {
		return at
	}
	var at string
	if real, err := filepath.EvalSymlinks(filepath.Join(r.root, filepath.FromSlash(rel))); err == nil {
		if abs, err := filepath.Abs(real); err == nil {
			real = abs
		}
		at = filepath.ToSlash(real)
	} else if rel == "." {
		at = filepath.ToSlash(filepath.Clean(r.root))
	} else {
		at = path.Join(r.dir(path.Dir(rel)), path.Base(rel))
	}
	r.dirs[rel] = at
	return at
}

// place returns where the name rel is: its directory resolved, its last
// element as written, since that may itself be a package's symlink.
func (r *diskPlaces) place(rel string) string {
	return path.Join(r.dir(path.Dir(rel)), path.Base(rel))
}

// newManifest is what the manifest will say once the plan is installed.
func newManifest(s spec, plan *Plan, old *Manifest, lay *layout) *Manifest {
	prefixRel := s.prefixRel()
	nu := &Manifest{
		Format:         manifestFormat,
		Name:           s.name,
		Version:        s.version,
		ArtifactSHA256: s.sha256,
		Prefix:         s.prefix,
	}
	for _, e := range plan.Entries {
		full := prefixRel + "/" + e.Path
		switch e.Type {
		case TypeFile:
			nu.Files = append(nu.Files, File{Path: full, Size: e.Size, Mode: Mode(e.Mode), SHA256: e.SHA256})
		case TypeSymlink:
			nu.Files = append(nu.Files, File{Path: full, Mode: Mode(e.Mode), Link: e.Target})
		}
	}
	// Directories the old version created stay the package's while the new
	// one needs them.
	needed := map[string]bool{prefixRel: true}
	for _, d := range ancestors(prefixRel) {
		needed[d] = true
	}
	for _, e := range plan.Entries {
		if e.Type == TypeDir {
			needed[prefixRel+"/"+e.Path] = true
		}
	}
	dirs := map[string]bool{}
	if old != nil {
		for _, d := range old.Dirs {
			if needed[d] {
				dirs[d] = true
			}
		}
	}
	for _, d := range lay.created(prefixRel) {
		dirs[d] = true
	}
	nu.Dirs = sortedKeys(dirs)
	nu.PostInstallPending = nu.hasPostInstall()
	return nu
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// tempName is where an entry is written before it is renamed into place.
func tempName(p string) string {
	return path.Join(path.Dir(p), "."+path.Base(p)+tempSuffix)
}

// extract writes the plan: directories, then the files (read again from the
// artifact and checked against the plan's hashes, in case it changed since
// validation), then symlinks. Everything goes through an os.Root at the
// prefix, so nothing on disk can steer a write outside it.
func (m *Manager) extract(ctx context.Context, root string, s spec, plan *Plan, lay *layout, artifact *os.File) error {
	for _, d := range lay.outside {
		p := filepath.Join(root, filepath.FromSlash(d))
		if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create prefix: %w", err)
		}
		if err := fsutil.SyncDir(filepath.Dir(p)); err != nil {
			return err
		}
	}
	pr, err := os.OpenRoot(filepath.Join(root, filepath.FromSlash(s.prefixRel())))
	if err != nil {
		return fmt.Errorf("open prefix: %w", err)
	}
	defer pr.Close()

	touched := map[string]bool{".": true}
	for _, e := range plan.Entries {
		if e.Type != TypeDir || !lay.create[e.Path] {
			continue
		}
		name := filepath.FromSlash(e.Path)
		if lay.replace[e.Path] {
			if err := pr.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("replace /%s/%s with a directory: %w", s.prefixRel(), e.Path, err)
			}
		}
		if err := pr.Mkdir(name, 0o700); err != nil {
			return fmt.Errorf("create directory: %w", err)
		}
		// Owners keep full access, so the package can be updated and removed.
		if err := pr.Chmod(name, e.Mode|0o700); err != nil {
			return fmt.Errorf("set mode of directory: %w", err)
		}
		touched[path.Dir(e.Path)] = true
	}

	if _, err := artifact.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind artifact: %w", err)
	}
	zr, err := gzip.NewReader(artifact)
	if err != nil {
		return fmt.Errorf("artifact changed while it was being installed: %w", err)
	}
	tr := tar.NewReader(zr)
	want := 0
	for _, e := range plan.Entries {
		if e.Type == TypeFile {
			want++
		}
	}
	written := 0
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("install interrupted: %w", err)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		name, err := entryPath(hdr.Name, m.limits)
		if err != nil {
			return err
		}
		e, ok := plan.entry(name)
		if !ok || e.Type != TypeFile || e.Size != hdr.Size {
			return fmt.Errorf("artifact changed while it was being installed: entry %s", printable(hdr.Name))
		}
		if err := writeFile(ctx, pr, e, tr); err != nil {
			return fmt.Errorf("write /%s/%s: %w", s.prefixRel(), e.Path, err)
		}
		touched[path.Dir(e.Path)] = true
		written++
		if err := m.testHook("file", e.Path); err != nil {
			return err
		}
	}
	if written != want {
		return fmt.Errorf("artifact changed while it was being installed: %d of %d files found", written, want)
	}

	for _, e := range plan.Entries {
		if e.Type != TypeSymlink {
			continue
		}
		tmp := filepath.FromSlash(tempName(e.Path))
		if err := pr.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("write symlink /%s/%s: %w", s.prefixRel(), e.Path, err)
		}
		if err := pr.Symlink(e.Target, tmp); err != nil {
			return fmt.Errorf("write symlink /%s/%s: %w", s.prefixRel(), e.Path, err)
		}
		if err := pr.Rename(tmp, filepath.FromSlash(e.Path)); err != nil {
			return fmt.Errorf("write symlink /%s/%s: %w", s.prefixRel(), e.Path, err)
		}
		touched[path.Dir(e.Path)] = true
	}
	return syncDirs(pr, touched)
}

// copyChunk is how much of a file writeFile copies between two looks at
// its context: a cancelled install stops within this much of a large file.
const copyChunk = 1 << 20

// writeFile writes one file under a temporary name, checks its hash, and
// renames it into place, so that a reader or a crash never sees half of it.
// It gives up, removing the temporary file, as soon as ctx ends.
func writeFile(ctx context.Context, pr *os.Root, e Entry, r io.Reader) (err error) {
	tmp := filepath.FromSlash(tempName(e.Path))
	if err := pr.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := pr.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			pr.Remove(tmp)
		}
	}()
	h := sha256.New()
	w := io.MultiWriter(f, h)
	for left := e.Size; left > 0; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("install interrupted: %w", err)
		}
		n, err := io.CopyN(w, r, min(left, copyChunk))
		left -= n
		if err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("install interrupted: %w", err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != e.SHA256 {
		return fmt.Errorf("content changed since validation (sha256 %s, want %s)", short(sum), short(e.SHA256))
	}
	if err := f.Chmod(e.Mode); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return pr.Rename(tmp, filepath.FromSlash(e.Path))
}

// syncDirs flushes the entries of the given directories (prefix-relative).
func syncDirs(pr *os.Root, dirs map[string]bool) error {
	for _, d := range sortedKeys(dirs) {
		f, err := pr.OpenFile(filepath.FromSlash(d), os.O_RDONLY|openDirOnly, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("sync %s: %w", d, err)
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("sync %s: %w", d, err)
		}
	}
	return nil
}

// finishInstall removes what the old version had and the new one does not,
// then commits the new manifest and drops the journal.
func (m *Manager) finishInstall(st store, old, nu *Manifest) error {
	dirs := existing(st.root, nu.Dirs)
	if old != nil {
		keep := map[string]bool{}
		for _, f := range nu.Files {
			keep[f.Path] = true
		}
		if err := m.removeFiles(st.root, old, keep); err != nil {
			return fmt.Errorf("remove files of %s %s: %w", old.Name, old.Version, err)
		}
		inNew := map[string]bool{}
		for _, d := range nu.Dirs {
			inNew[d] = true
		}
		var stale []string
		for _, d := range old.Dirs {
			if !inNew[d] {
				stale = append(stale, d)
			}
		}
		m.removeDirs(st.root, old, stale)
		// A directory the old version created that still holds someone
		// else's files stays the package's to remove later, if it can be
		// described relative to the new prefix.
		probe := *nu
		for _, d := range existing(st.root, stale) {
			probe.Dirs = []string{d}
			if probe.check(nu.Name) == nil {
				dirs = append(dirs, d)
			}
		}
		sort.Strings(dirs)
	}
	nu.Dirs = dirs
	nu.InstalledAt = m.now().UTC()
	if err := st.save(nu); err != nil {
		return err
	}
	return st.removeJournal(nu.Name)
}

// existing returns the dirs (root-relative) that are directories on disk.
func existing(root string, dirs []string) []string {
	out := []string{}
	for _, d := range dirs {
		if fi, err := os.Lstat(filepath.Join(root, filepath.FromSlash(d))); err == nil && fi.IsDir() {
			out = append(out, d)
		}
	}
	return out
}

// undoInstall takes back an install that did not finish: it removes the new
// files that are exactly as the install wrote them (and no file it did not
// write), leftover temporary files, and the directories it created if they
// are empty. Old files already overwritten stay, so the old manifest no
// longer verifies and Scan reports the drift.
func (m *Manager) undoInstall(st store, j *journal) error {
	nu := j.New
	oldFiles, oldDirs := map[string]bool{}, map[string]bool{}
	if j.Old != nil {
		for _, f := range j.Old.Files {
			oldFiles[f.Path] = true
		}
		for _, d := range j.Old.Dirs {
			oldDirs[d] = true
		}
	}
	pr, err := os.OpenRoot(filepath.Join(st.root, filepath.FromSlash(nu.prefixRel())))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("open prefix %s: %w", nu.Prefix, err)
	default:
		touched := map[string]bool{}
		for _, f := range nu.Files {
			rel, _ := nu.inPrefix(f.Path)
			name := filepath.FromSlash(rel)
			_ = pr.Remove(filepath.FromSlash(tempName(rel)))
			if oldFiles[f.Path] || !sameFile(pr, name, f) {
				continue
			}
			if err := pr.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				pr.Close()
				return fmt.Errorf("remove /%s: %w", f.Path, err)
			}
			touched[path.Dir(rel)] = true
		}
		err := syncDirs(pr, touched)
		pr.Close()
		if err != nil {
			return err
		}
	}
	var created []string
	for _, d := range nu.Dirs {
		if !oldDirs[d] {
			created = append(created, d)
		}
	}
	m.removeDirs(st.root, nu, created)
	return st.removeJournal(nu.Name)
}

// sameFile reports whether name is exactly f.
func sameFile(pr *os.Root, name string, f File) bool {
	fi, err := pr.Lstat(name)
	if err != nil {
		return false
	}
	if f.Link != "" {
		target, err := pr.Readlink(name)
		return err == nil && fi.Mode()&fs.ModeSymlink != 0 && target == f.Link
	}
	if !fi.Mode().IsRegular() || fi.Size() != f.Size {
		return false
	}
	sum, err := hashIn(pr, name, f.Size)
	return err == nil && sum == f.SHA256
}

// hashIn returns the SHA-256 of the regular file name, reading no more
// than size+1 bytes of it: a file that grows meanwhile differs all the
// same from the size bytes wanted, and is not read to its end.
func hashIn(pr *os.Root, name string, size int64) (string, error) {
	r, err := openRegular(pr, name)
	if err != nil {
		return "", err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(r, size+1)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// openRegular opens name for reading if it is a regular file. A package's
// folder may be writable by others, so whatever was seen at name a moment
// before is not trusted: a fifo put there does not block the open, and is
// refused.
func openRegular(pr *os.Root, name string) (*os.File, error) {
	f, err := pr.OpenFile(name, os.O_RDONLY|openNonBlock, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open %s: a %s, not a regular file", name, typeName(fi.Mode()))
	}
	return f, nil
}

// remove uninstalls package s: exactly the files in its manifest, then the
// directories it created if they are empty, then the manifest.
func (m *Manager) remove(st store, s spec) (*proto.ApplyResponse, error) {
	old, err := st.load(s.name)
	if err != nil {
		return nil, err
	}
	if old == nil {
		return &proto.ApplyResponse{Message: fmt.Sprintf("%s is not installed", s.name)}, nil
	}
	if err := st.saveJournal(s.name, &journal{Op: opRemove, Old: old}); err != nil {
		return nil, err
	}
	if err := m.finishRemove(st, old); err != nil {
		return nil, err
	}
	if err := st.removeFile(st.postInstallMarker(s.name)); err != nil {
		return nil, err
	}
	m.logger.Info("package removed", "package", old.Name, "version", old.Version, "files", len(old.Files))
	return &proto.ApplyResponse{Changed: true, Message: fmt.Sprintf("removed %s %s (%d files)", old.Name, old.Version, len(old.Files))}, nil
}

func (m *Manager) finishRemove(st store, old *Manifest) error {
	if err := m.removeFiles(st.root, old, nil); err != nil {
		return err
	}
	m.removeDirs(st.root, old, old.Dirs)
	if err := st.removeManifest(old.Name); err != nil {
		return err
	}
	return st.removeJournal(old.Name)
}

// removeFiles removes the files of mf not in keep (root-relative paths),
// and any temporary file left next to them. A directory found where a file
// was is left alone.
func (m *Manager) removeFiles(root string, mf *Manifest, keep map[string]bool) error {
	pr, err := os.OpenRoot(filepath.Join(root, filepath.FromSlash(mf.prefixRel())))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open prefix %s: %w", mf.Prefix, err)
	}
	defer pr.Close()
	touched := map[string]bool{}
	for _, f := range mf.Files {
		if keep[f.Path] {
			continue
		}
		rel, _ := mf.inPrefix(f.Path)
		name := filepath.FromSlash(rel)
		_ = pr.Remove(filepath.FromSlash(tempName(rel)))
		fi, err := pr.Lstat(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("remove /%s: %w", f.Path, err)
		}
		if fi.IsDir() {
			m.logger.Warn("not removing a directory found where the package had a file", "path", "/"+f.Path)
			continue
		}
		if err := pr.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove /%s: %w", f.Path, err)
		}
		touched[path.Dir(rel)] = true
	}
	return syncDirs(pr, touched)
}

// removeDirs removes those of dirs (root-relative, inside or above mf's
// prefix) that are empty directories, deepest first. One that is not empty
// holds someone else's files and stays.
func (m *Manager) removeDirs(root string, mf *Manifest, dirs []string) {
	sorted := append([]string(nil), dirs...)
	sort.Slice(sorted, func(i, j int) bool {
		di, dj := strings.Count(sorted[i], "/"), strings.Count(sorted[j], "/")
		if di != dj {
			return di > dj
		}
		return sorted[i] > sorted[j]
	})
	var outside []string
	if pr, err := os.OpenRoot(filepath.Join(root, filepath.FromSlash(mf.prefixRel()))); err == nil {
		for _, d := range sorted {
			rel, inside := mf.inPrefix(d)
			if !inside {
				outside = append(outside, d)
				continue
			}
			name := filepath.FromSlash(rel)
			if fi, err := pr.Lstat(name); err == nil && fi.IsDir() {
				if err := pr.Remove(name); err != nil {
					m.logger.Debug("directory kept", "path", "/"+d, "reason", err)
				}
			}
		}
		pr.Close()
	} else {
		for _, d := range sorted {
			if _, inside := mf.inPrefix(d); !inside {
				outside = append(outside, d)
			}
		}
	}
	for _, d := range outside {
		p := filepath.Join(root, filepath.FromSlash(d))
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			if err := os.Remove(p); err != nil {
				m.logger.Debug("directory kept", "path", "/"+d, "reason", err)
			}
		}
	}
}

// recoverAll finishes or undoes every change a crash cut short.
func (m *Manager) recoverAll(ctx context.Context, st store) error {
	names, err := st.names(".journal")
	if err != nil {
		return err
	}
	for _, name := range names {
		j, err := st.loadJournal(name)
		if err != nil {
			return err
		}
		if j == nil {
			continue
		}
		if err := m.recover(ctx, st, j); err != nil {
			return fmt.Errorf("recover %s: %w", name, err)
		}
	}
	return nil
}

// recover finishes an interrupted removal; an interrupted install is
// finished if every new file made it to disk, and undone otherwise.
func (m *Manager) recover(ctx context.Context, st store, j *journal) error {
	if j.Op == opRemove {
		m.logger.Warn("finishing an interrupted removal", "package", j.Old.Name, "version", j.Old.Version)
		return m.finishRemove(st, j.Old)
	}
	problems := verify(ctx, st.root, j.New)
	if len(problems) == 0 {
		m.logger.Warn("finishing an interrupted install", "package", j.New.Name, "version", j.New.Version)
		return m.finishInstall(st, j.Old, j.New)
	}
	m.logger.Warn("undoing an interrupted install", "package", j.New.Name, "version", j.New.Version, "because", problems[0])
	return m.undoInstall(st, j)
}

// verify compares the disk with the manifest and says what differs, e.g.
// "file opt/hello/bin/hello missing".
func verify(ctx context.Context, root string, mf *Manifest) []string {
	pr, err := os.OpenRoot(filepath.Join(root, filepath.FromSlash(mf.prefixRel())))
	if errors.Is(err, fs.ErrNotExist) {
		return []string{fmt.Sprintf("prefix %s missing", mf.Prefix)}
	}
	if err != nil {
		return []string{fmt.Sprintf("prefix %s: %v", mf.Prefix, err)}
	}
	defer pr.Close()
	var problems []string
	for _, f := range mf.Files {
		if err := ctx.Err(); err != nil {
			return append(problems, fmt.Sprintf("verification interrupted: %v", err))
		}
		rel, _ := mf.inPrefix(f.Path)
		if p := verifyFile(pr, filepath.FromSlash(rel), f); p != "" {
			problems = append(problems, p)
		}
	}
	return problems
}

func verifyFile(pr *os.Root, name string, f File) string {
	fi, err := pr.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("file %s missing", f.Path)
	case err != nil:
		return fmt.Sprintf("file %s: %v", f.Path, err)
	}
	if f.Link != "" {
		if fi.Mode()&fs.ModeSymlink == 0 {
			return fmt.Sprintf("symlink %s replaced by a %s", f.Path, typeName(fi.Mode()))
		}
		target, err := pr.Readlink(name)
		if err != nil {
			return fmt.Sprintf("symlink %s: %v", f.Path, err)
		}
		if target != f.Link {
			return fmt.Sprintf("symlink %s points to %s, want %s", f.Path, target, f.Link)
		}
		return ""
	}
	switch {
	case !fi.Mode().IsRegular():
		return fmt.Sprintf("file %s replaced by a %s", f.Path, typeName(fi.Mode()))
	case fi.Size() != f.Size:
		return fmt.Sprintf("file %s modified (%d bytes, want %d)", f.Path, fi.Size(), f.Size)
	case checkModes && fi.Mode().Perm() != fs.FileMode(f.Mode):
		return fmt.Sprintf("file %s has mode %04o, want %04o", f.Path, fi.Mode().Perm(), uint32(f.Mode))
	}
	sum, err := hashIn(pr, name, f.Size)
	if err != nil {
		return fmt.Sprintf("file %s: %v", f.Path, err)
	}
	if sum != f.SHA256 {
		return fmt.Sprintf("file %s modified (sha256 %s, want %s)", f.Path, short(sum), short(f.SHA256))
	}
	return ""
}

func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m.IsRegular():
		return "file"
	}
	return "special file"
}
