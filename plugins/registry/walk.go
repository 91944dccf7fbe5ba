package registry

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The plugin runs as root and edits files in folders that other users may
// own (an application's own config folder under /opt). Such a user can put
// a symlink, or a folder of links, where a settings file was; the path is
// therefore resolved one element at a time, as systemd's chase() does with
// CHASE_SAFE, and the file is then read and written through a handle on
// the folder that was checked, never through its path again.

// maxSymlinks is how many symlinks a path may go through, as Linux allows.
const maxSymlinks = 40

// errChanged is wrapped by errors about a path that changed between being
// checked and being used. It is not a refusal: the next try walks again
// and refuses what is unsafe then.
var errChanged = errors.New("it changed while the plugin was using it; the next run tries again")

// node is an entry the walk reached: its path on disk and its Lstat.
type node struct {
	path string
	fi   fs.FileInfo
}

// safeStep is the rule of CHASE_SAFE: an entry may be reached from a
// folder, or through a symlink, that root owns or that its own owner owns.
// Anything else lets one user choose what root touches of someone else's.
// Where owners are not known (fileOwner says -1), every step is safe.
func safeStep(from, to fs.FileInfo) bool {
	fromUID, _ := fileOwner(from)
	toUID, _ := fileOwner(to)
	return fromUID <= 0 || fromUID == toUID
}

func ownerName(fi fs.FileInfo) string {
	switch uid, _ := fileOwner(fi); uid {
	case 0:
		return "root"
	default:
		return fmt.Sprintf("uid %d", uid)
	}
}

func kindName(fi fs.FileInfo) string {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return "a symlink"
	case fi.IsDir():
		return "a folder"
	case fi.Mode().IsRegular():
		return "a file"
	default:
		return "a special file"
	}
}

// walker resolves one policy path inside a backend's root.
type walker struct {
	b      *fileBackend
	policy string // the path as the policy names it, for messages
	hops   int
}

// logical is where a path on disk is as the policy would name it.
func (w *walker) logical(p string) string {
	rel, err := filepath.Rel(w.b.root, p)
	if err != nil || rel == "." {
		return "/"
	}
	return "/" + filepath.ToSlash(rel)
}

// walk resolves elems from the folder on top of stack, the resolved path
// from the root. It returns the stack at the end and, if an element does
// not exist, that element and those after it (the folders and the file to
// create). Inside a symlink's target (inLink) a missing element is a
// dangling link, refused as it always was.
func (w *walker) walk(stack []node, elems []string, inLink bool) ([]node, []string, error) {
	for i, e := range elems {
		top := stack[len(stack)-1]
		if !top.fi.IsDir() {
			return nil, nil, fmt.Errorf("look at %s: %s is not a folder", w.policy, w.logical(top.path))
		}
		switch e {
		case "", ".":
			continue
		case "..":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			} else if filepath.Dir(w.b.root) != w.b.root {
				return nil, nil, fmt.Errorf("path %s leads through a symlink above the root %s: %w", w.policy, w.b.root, ErrOutside)
			}
			continue
		}
		p := filepath.Join(top.path, e)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) && !inLink {
			return stack, elems[i:], nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("path %s: a symlink on it does not resolve: %s does not exist: %w", w.policy, w.logical(p), ErrOutside)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("look at %s: %w", w.policy, err)
		}
		if !safeStep(top.fi, fi) {
			return nil, nil, fmt.Errorf("path %s: %s is %s owned by %s in a folder of %s: refused, so that a user cannot send root's reads and writes to what is not theirs; if it is the application's own (not a link to something else), give it to %s, or point the policy at a file in a folder root owns: %w",
				w.policy, w.logical(p), kindName(fi), ownerName(fi), ownerName(top.fi), ownerName(top.fi), ErrOutside)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			stack = append(slices.Clip(stack), node{p, fi})
			continue
		}
		if w.hops++; w.hops > maxSymlinks {
			return nil, nil, fmt.Errorf("path %s goes through more than %d symlinks (a loop?): %w", w.policy, maxSymlinks, ErrOutside)
		}
		target, err := os.Readlink(p)
		if err != nil {
			return nil, nil, fmt.Errorf("look at %s: %w", w.policy, err)
		}
		start, telems, err := w.linkStart(stack, p, target)
		if err != nil {
			return nil, nil, err
		}
		res, _, err := w.walk(slices.Clip(start), telems, true)
		if err != nil {
			return nil, nil, err
		}
		end := res[len(res)-1]
		if !safeStep(fi, end.fi) {
			return nil, nil, fmt.Errorf("path %s: %s is a symlink owned by %s in a folder of %s pointing to %s owned by %s: refused, so that a user cannot send root's writes elsewhere; make the link root's or point the policy at the real file: %w",
				w.policy, w.logical(p), ownerName(fi), ownerName(top.fi), w.logical(end.path), ownerName(end.fi), ErrOutside)
		}
		stack = res
	}
	return stack, nil, nil
}

// linkStart is where the symlink at p with target starts: the folder it is
// in, or the root for an absolute target, which must lie inside the root.
func (w *walker) linkStart(stack []node, p, target string) ([]node, []string, error) {
	if target == "" {
		return nil, nil, fmt.Errorf("path %s: the symlink %s is empty: %w", w.policy, w.logical(p), ErrOutside)
	}
	if !filepath.IsAbs(target) && !os.IsPathSeparator(target[0]) {
		return stack, splitPath(target), nil
	}
	if rel, ok := w.b.inside(target); ok {
		return stack[:1], splitPath(rel), nil
	}
	return nil, nil, fmt.Errorf("path %s leads through a symlink to %s, out of the root: %w", w.policy, target, ErrOutside)
}

func splitPath(p string) []string {
	return strings.FieldsFunc(p, func(r rune) bool { return r < 0x80 && os.IsPathSeparator(byte(r)) })
}

// inside says where an absolute symlink target is below the root, which
// may be named as it was given or with its own symlinks resolved.
func (b *fileBackend) inside(target string) (string, bool) {
	target = target[len(filepath.VolumeName(target)):]
	for _, root := range []string{b.root, b.given} {
		root = root[len(filepath.VolumeName(root)):]
		switch {
		case root == "":
		case filepath.Dir(root) == root:
			return target, true
		case target == root:
			return "", true
		case strings.HasPrefix(target, root) && os.IsPathSeparator(target[len(root)]):
			return target[len(root):], true
		}
	}
	return "", false
}

// target is a settings file as the walk found it, with the deepest folder
// that exists on the way open, so that reads and writes act on the folder
// that was checked even if its path is changed afterwards.
type target struct {
	policy  string      // the path the policy names, for messages
	dir     *os.Root    // the file's folder, or the deepest that exists
	dirInfo fs.FileInfo // its Lstat during the walk
	folders []string    // folders to create below dir before the file
	name    string      // the file's name in its folder
	file    fs.FileInfo // its Lstat during the walk; nil when it does not exist
}

func (t *target) close() { t.dir.Close() }

// open resolves p safely and opens the folder the file is (or will be) in.
// It refuses a path outside the allowed prefixes, in the plugin's own
// state, that a symlink leads out of the root or out of the allowed
// prefixes, that an unsafe step leads through (see safeStep), or that is
// not a regular file.
func (b *fileBackend) open(p string) (*target, error) {
	if err := checkFilePath(p); err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrOutside)
	}
	allowList := strings.Join(b.allow, ", ")
	if !b.allowed(p) {
		return nil, fmt.Errorf("path %s is %w: settings files must be under %s (set %s on the agent to allow others)", p, ErrOutside, allowList, AllowEnv)
	}
	if isStateDir(p) {
		return nil, fmt.Errorf("path %s is the plugin's own state: %w", p, ErrOutside)
	}
	rootInfo, err := os.Lstat(b.root)
	if err != nil {
		return nil, fmt.Errorf("root %s: %w", b.root, err)
	}
	w := &walker{b: b, policy: p}
	stack, missing, err := w.walk([]node{{b.root, rootInfo}}, splitPath(strings.TrimPrefix(p, "/")), false)
	if err != nil {
		return nil, err
	}
	last := stack[len(stack)-1]
	real := filepath.Join(append([]string{last.path}, missing...)...)
	if rel, err := filepath.Rel(b.root, real); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return nil, fmt.Errorf("path %s leads through a symlink to %s, out of the root: %w", p, real, ErrOutside)
	}
	logical := w.logical(real)
	if !b.allowed(logical) {
		return nil, fmt.Errorf("path %s leads through a symlink to %s, which is not under %s: %w", p, logical, allowList, ErrOutside)
	}
	if isStateDir(logical) {
		return nil, fmt.Errorf("path %s leads through a symlink to %s, the plugin's own state: %w", p, logical, ErrOutside)
	}
	t := &target{policy: p}
	dir := last
	if len(missing) > 0 {
		t.folders, t.name = missing[:len(missing)-1], missing[len(missing)-1]
	} else {
		if len(stack) < 2 || !last.fi.Mode().IsRegular() {
			return nil, fmt.Errorf("path %s is not a regular file", p)
		}
		dir, t.name, t.file = stack[len(stack)-2], filepath.Base(last.path), last.fi
	}
	if t.dir, err = os.OpenRoot(dir.path); err != nil {
		return nil, fmt.Errorf("open the folder of %s: %w", p, err)
	}
	fi, err := t.dir.Stat(".")
	if err != nil || !os.SameFile(fi, dir.fi) {
		t.dir.Close()
		return nil, fmt.Errorf("path %s: the folder %s: %w", p, w.logical(dir.path), errChanged)
	}
	t.dirInfo = dir.fi
	return t, nil
}

func isStateDir(p string) bool {
	rel := strings.TrimPrefix(p, "/")
	return rel == StateDir || strings.HasPrefix(rel, StateDir+"/")
}

// read reads the file the walk found and its permission bits; fs.ErrNotExist
// when there was none. One larger than MaxSettingsFile is refused having
// read no more than that: the plugin runs as root with the memory of the
// agent's host.
func (t *target) read() ([]byte, fs.FileMode, error) {
	if t.file == nil {
		return nil, 0, fs.ErrNotExist
	}
	// os.Root follows a symlink swapped in since the walk as long as it
	// stays in the folder; the check of the file's identity refuses it.
	f, err := t.dir.OpenFile(t.name, os.O_RDONLY|oNonblock, 0)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !os.SameFile(fi, t.file) || !fi.Mode().IsRegular() {
		return nil, 0, errChanged
	}
	if fi.Size() > MaxSettingsFile {
		return nil, 0, fmt.Errorf("the file is %d bytes, more than the %d a settings file may have", fi.Size(), MaxSettingsFile)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSettingsFile+1))
	if err != nil {
		return nil, 0, err
	}
	if len(data) > MaxSettingsFile {
		return nil, 0, fmt.Errorf("the file has grown to more than the %d bytes a settings file may have", MaxSettingsFile)
	}
	return data, fi.Mode().Perm(), nil
}

// unchanged says whether the file's name in the open folder is still what
// the walk found there (or still nothing).
func (t *target) unchanged(dir *os.Root) error {
	fi, err := dir.Lstat(t.name)
	switch {
	case t.file == nil && errors.Is(err, fs.ErrNotExist):
		return nil
	case t.file == nil && err == nil:
		return fmt.Errorf("%s appeared: %w", t.policy, errChanged)
	case err != nil:
		return fmt.Errorf("look at %s: %w", t.policy, err)
	case !os.SameFile(fi, t.file) || !fi.Mode().IsRegular():
		// The type too: a symlink made after the file was removed may
		// reuse its inode number.
		return fmt.Errorf("%s was replaced: %w", t.policy, errChanged)
	}
	return nil
}

// write replaces the file atomically (a temporary file in its folder,
// synced, renamed over it, the folder synced) inside the folder that was
// checked. A file already there keeps its owner and group: the agent
// writes as root, and an application that reads only its own 0600 config
// must still read it. A file or folder created in a folder that a user
// other than root owns is given to that folder's owner and group, so that
// it stays the user's and the next walk accepts it.
func (t *target) write(data []byte, mode fs.FileMode) error {
	dir, dirInfo, err := t.makeFolders()
	if err != nil {
		return err
	}
	if dir != t.dir {
		defer dir.Close()
	}
	if err := t.unchanged(dir); err != nil {
		return err
	}
	uid, gid := -1, -1
	if t.file != nil {
		uid, gid = fileOwner(t.file)
	} else if u, g := fileOwner(dirInfo); u > 0 {
		uid, gid = u, g
	}
	f, tmp, err := createTemp(dir, t.name)
	if err != nil {
		return fmt.Errorf("write %s: %w", t.policy, err)
	}
	defer dir.Remove(tmp) // a no-op once renamed
	err = func() error {
		defer f.Close()
		if uid >= 0 || gid >= 0 {
			// Before the mode: chown clears set-id bits.
			if err := f.Chown(uid, gid); err != nil {
				return fmt.Errorf("give it its owner: %w", err)
			}
		}
		if err := f.Chmod(mode); err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		return f.Close()
	}()
	if err != nil {
		return fmt.Errorf("write %s: %w", t.policy, err)
	}
	if err := dir.Rename(tmp, t.name); err != nil {
		return fmt.Errorf("write %s: %w", t.policy, err)
	}
	return syncRoot(dir, t.policy)
}

// createTemp creates a new file beside name in dir, named as
// fsutil.WriteFileAtomic names its own so that leftovers are recognised.
func createTemp(dir *os.Root, name string) (*os.File, string, error) {
	for range 10 {
		tmp := "." + name + ".tmp-" + rand.Text()[:10]
		f, err := dir.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, tmp, err
	}
	return nil, "", fmt.Errorf("no free name for a temporary file beside %s", name)
}

// makeFolders creates the folders missing on the way to the file, one at
// a time inside the folder opened before, and returns the file's folder
// and its information.
func (t *target) makeFolders() (*os.Root, fs.FileInfo, error) {
	dir, dirInfo := t.dir, t.dirInfo
	closeDir := func() {
		if dir != t.dir {
			dir.Close()
		}
	}
	for _, name := range t.folders {
		err := dir.Mkdir(name, 0o755)
		created := err == nil
		if err != nil && !errors.Is(err, fs.ErrExist) {
			closeDir()
			return nil, nil, fmt.Errorf("create the folders of %s: %w", t.policy, err)
		}
		fi, err := dir.Lstat(name)
		if err != nil || !fi.IsDir() || (!created && !safeStep(dirInfo, fi)) {
			closeDir()
			return nil, nil, fmt.Errorf("create the folders of %s: %s: %w", t.policy, name, errChanged)
		}
		sub, err := dir.OpenRoot(name)
		if err != nil {
			closeDir()
			return nil, nil, fmt.Errorf("create the folders of %s: %w", t.policy, err)
		}
		subInfo, err := sub.Stat(".")
		if err == nil && !os.SameFile(subInfo, fi) {
			err = errChanged
		}
		if uid, gid := fileOwner(dirInfo); err == nil && created && uid > 0 {
			err = chownRoot(sub, uid, gid)
			if err == nil {
				subInfo, err = sub.Stat(".")
			}
		}
		closeDir()
		if err != nil {
			sub.Close()
			return nil, nil, fmt.Errorf("create the folders of %s: %s: %w", t.policy, name, err)
		}
		dir, dirInfo = sub, subInfo
	}
	return dir, dirInfo, nil
}

func chownRoot(r *os.Root, uid, gid int) error {
	d, err := r.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Chown(uid, gid)
}

func syncRoot(r *os.Root, what string) error {
	d, err := r.Open(".")
	if err != nil {
		return fmt.Errorf("sync the folder of %s: %w", what, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync the folder of %s: %w", what, err)
	}
	return nil
}

// remove removes the file the walk found from the folder it was found in.
func (t *target) remove() error {
	if t.file == nil {
		return nil
	}
	if err := t.unchanged(t.dir); err != nil {
		return err
	}
	if err := t.dir.Remove(t.name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", t.policy, err)
	}
	return syncRoot(t.dir, t.policy)
}
