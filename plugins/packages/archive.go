package packages

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// Limits bound what an archive may expand to. An archive that exceeds one is
// refused before anything is written.
type Limits struct {
	MaxEntries   int   // entries, directories (implied ones too) and symlinks included
	MaxTotalSize int64 // sum of the sizes of the files
	MaxPathLen   int   // bytes in an entry's path or a symlink's target
	// MaxNameBytes bounds the paths of all entries (implied directories
	// too) and the targets of all symlinks together: each is held in
	// memory several times over and written to the manifest, which every
	// later apply reads.
	MaxNameBytes int64
}

// DefaultLimits are generous for software packages and small enough that a
// hostile archive cannot fill a disk or exhaust the plugin's memory.
func DefaultLimits() Limits {
	return Limits{MaxEntries: 100_000, MaxTotalSize: 8 << 30, MaxPathLen: 4096, MaxNameBytes: 32 << 20}
}

const (
	// maxElemLen bounds one path element, leaving room under the usual
	// 255-byte limit for the temporary name a file is written under.
	maxElemLen = 240
	// maxLinkHops bounds how many symlinks resolving one target may pass
	// through, as the kernel's ELOOP limit does.
	maxLinkHops = 40
	// maxTrailing bounds what may follow the tar's end inside the gzip
	// stream (normally a few blocks of zero padding).
	maxTrailing = 1 << 20
	// tempSuffix names the file an entry is written to before it is renamed
	// into place. Entries may not use it, so a leftover can always be told
	// apart and removed.
	tempSuffix = ".outpost-new"
)

// EntryType is what an archive entry creates.
type EntryType string

// The entry types an archive may contain. Anything else (hard links, devices,
// fifos, sparse files) is refused.
const (
	TypeDir     EntryType = "dir"
	TypeFile    EntryType = "file"
	TypeSymlink EntryType = "symlink"
)

// Entry is one thing a validated archive installs.
type Entry struct {
	Path   string      // slash-separated, clean, relative to the prefix
	Type   EntryType   //
	Mode   fs.FileMode // permission bits only
	Size   int64       // files
	SHA256 string      // files, lower-case hex
	Target string      // symlinks, relative
}

// Plan is what a validated archive installs: its entries in path order, so a
// directory comes before what is in it. Directories that the archive implies
// but does not list are included with mode 0755.
type Plan struct {
	Entries []Entry
	Size    int64 // total bytes of files
}

// entry returns the plan's entry at p.
func (p *Plan) entry(name string) (Entry, bool) {
	i := sort.Search(len(p.Entries), func(i int) bool { return p.Entries[i].Path >= name })
	if i < len(p.Entries) && p.Entries[i].Path == name {
		return p.Entries[i], true
	}
	return Entry{}, false
}

// ArchiveError says which entry of an archive was refused and why.
type ArchiveError struct {
	Entry  string // the entry's name as in the archive; empty for the whole archive
	Reason string
}

func (e *ArchiveError) Error() string {
	if e.Entry == "" {
		return "archive " + e.Reason
	}
	return "archive entry " + printable(e.Entry) + " " + e.Reason
}

// printable shows a name as is unless it could mislead in a message.
func printable(s string) string {
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || r == ' ' {
			return strconv.Quote(s)
		}
	}
	return s
}

func refuse(entry, format string, args ...any) error {
	return &ArchiveError{Entry: entry, Reason: fmt.Sprintf(format, args...)}
}

// ValidateArchive reads a gzip'd tar from r and returns what it would
// install, or an error naming the first entry that is refused. It writes
// nothing. Refused: paths that are absolute or have ".." elements, symlinks
// whose target is absolute or resolves outside the prefix, entries inside a
// symlink, hard links, devices, fifos, setuid or setgid files, duplicate
// entries, and archives beyond lim. Setgid and sticky bits on directories are
// dropped; owners and times are ignored.
func ValidateArchive(r io.Reader, lim Limits) (*Plan, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("artifact is not a gzip'd tar: %w", err)
	}
	tr := tar.NewReader(zr)
	v := &validator{lim: lim, entries: map[string]*Entry{}, names: map[string]string{}}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		if err := v.add(hdr, tr); err != nil {
			return nil, err
		}
	}
	// Read to the gzip trailer so that a corrupt stream is noticed.
	n, err := io.Copy(io.Discard, io.LimitReader(zr, maxTrailing+1))
	if err != nil {
		return nil, fmt.Errorf("read archive: %w", err)
	}
	if n > maxTrailing {
		return nil, refuse("", "has more than %d bytes after the end of the tar", maxTrailing)
	}
	return v.finish()
}

type validator struct {
	lim       Limits
	count     int
	nameBytes int64 // bytes of paths and symlink targets so far
	size      int64
	entries   map[string]*Entry
	names     map[string]string // clean path → name in the archive, for messages
}

func (v *validator) add(hdr *tar.Header, r io.Reader) error {
	v.count++
	if v.count > v.lim.MaxEntries {
		return refuse("", "has more than %d entries", v.lim.MaxEntries)
	}
	name, err := entryPath(hdr.Name, v.lim)
	if err != nil {
		return err
	}
	if err := v.addNames(int64(len(name) + len(hdr.Linkname))); err != nil {
		return err
	}
	if hdr.Mode&(04000|02000) != 0 && hdr.Typeflag != tar.TypeDir {
		return refuse(hdr.Name, "has the setuid or setgid bit; such files are not installed")
	}
	if name == "" {
		if hdr.Typeflag == tar.TypeDir {
			return nil // the prefix itself: its mode is not the archive's to set
		}
		return refuse(hdr.Name, "would replace the prefix itself")
	}
	e := Entry{Path: name, Mode: fs.FileMode(hdr.Mode) & fs.ModePerm}
	switch hdr.Typeflag {
	case tar.TypeDir:
		e.Type = TypeDir
		if prev, ok := v.entries[name]; ok && prev.Type == TypeDir {
			prev.Mode = e.Mode
			return nil
		}
	case tar.TypeReg: // the reader turns the legacy TypeRegA into this
		e.Type = TypeFile
		if hdr.Size > v.lim.MaxTotalSize-v.size {
			return refuse(hdr.Name, "makes the archive expand to more than %s", formatSize(v.lim.MaxTotalSize))
		}
		h := sha256.New()
		n, err := io.Copy(h, r)
		if err != nil {
			return fmt.Errorf("read archive entry %s: %w", printable(hdr.Name), err)
		}
		if n != hdr.Size {
			return refuse(hdr.Name, "is truncated: %d of %d bytes", n, hdr.Size)
		}
		v.size += n
		e.Size, e.SHA256 = n, hex.EncodeToString(h.Sum(nil))
	case tar.TypeSymlink:
		e.Type, e.Mode = TypeSymlink, 0o777
		if err := checkTarget(hdr.Name, hdr.Linkname, v.lim); err != nil {
			return err
		}
		e.Target = hdr.Linkname
	case tar.TypeLink:
		return refuse(hdr.Name, "is a hard link to %s; hard links are not supported", printable(hdr.Linkname))
	case tar.TypeChar, tar.TypeBlock:
		return refuse(hdr.Name, "is a device; only files, directories and symlinks are installed")
	case tar.TypeFifo:
		return refuse(hdr.Name, "is a fifo; only files, directories and symlinks are installed")
	default:
		return refuse(hdr.Name, "has unsupported type %q; only files, directories and symlinks are installed", hdr.Typeflag)
	}
	if _, dup := v.entries[name]; dup {
		return refuse(hdr.Name, "appears twice")
	}
	v.entries[name] = &e
	v.names[name] = hdr.Name
	return nil
}

// addNames counts n more bytes of names against MaxNameBytes.
func (v *validator) addNames(n int64) error {
	v.nameBytes += n
	if v.nameBytes > v.lim.MaxNameBytes {
		return refuse("", "expands to names of more than %s (paths and symlink targets, implied directories included)", formatSize(v.lim.MaxNameBytes))
	}
	return nil
}

// entryPath turns an archive name into a clean path relative to the prefix;
// "" is the prefix itself.
func entryPath(raw string, lim Limits) (string, error) {
	if len(raw) > lim.MaxPathLen {
		return "", refuse(raw, "has a name of %d bytes, longer than the limit of %d", len(raw), lim.MaxPathLen)
	}
	if strings.ContainsRune(raw, 0) {
		return "", refuse(raw, "has a NUL byte in its name")
	}
	if strings.Contains(raw, `\`) {
		return "", refuse(raw, "has a backslash in its name")
	}
	if strings.HasPrefix(raw, "/") {
		return "", refuse(raw, "is an absolute path, which escapes the prefix")
	}
	name := strings.TrimSuffix(strings.TrimPrefix(raw, "./"), "/")
	if name == "" || name == "." {
		return "", nil
	}
	for _, elem := range strings.Split(name, "/") {
		switch {
		case elem == "..":
			return "", refuse(raw, "escapes the prefix")
		case elem == "" || elem == ".":
			return "", refuse(raw, "is not a clean path")
		case len(elem) > maxElemLen:
			return "", refuse(raw, "has a path element longer than %d bytes", maxElemLen)
		}
	}
	if !filepath.IsLocal(filepath.FromSlash(name)) {
		return "", refuse(raw, "is not a local path on this system")
	}
	if strings.HasSuffix(name, tempSuffix) {
		return "", refuse(raw, "ends in %s, which is reserved", tempSuffix)
	}
	return name, nil
}

// checkTarget checks what can be checked of a symlink's target on its own;
// where it resolves is checked once every entry is known.
func checkTarget(name, target string, lim Limits) error {
	switch {
	case target == "":
		return refuse(name, "is a symlink with an empty target")
	case len(target) > lim.MaxPathLen:
		return refuse(name, "is a symlink with a target of %d bytes, longer than the limit of %d", len(target), lim.MaxPathLen)
	case strings.ContainsRune(target, 0) || strings.Contains(target, `\`):
		return refuse(name, "is a symlink with a NUL byte or backslash in its target")
	case path.IsAbs(target) || filepath.IsAbs(filepath.FromSlash(target)) || filepath.VolumeName(filepath.FromSlash(target)) != "":
		return refuse(name, "is a symlink to the absolute path %s; only relative targets inside the prefix are installed", printable(target))
	}
	return nil
}

// finish adds implied directories, counted against MaxEntries, checks
// that nothing is installed through a symlink or under a file, and that
// every symlink resolves inside the prefix.
func (v *validator) finish() (*Plan, error) {
	explicit := make([]string, 0, len(v.entries))
	for name := range v.entries {
		explicit = append(explicit, name)
	}
	sort.Strings(explicit)
	// A directory checked once need not be again, nor those above it:
	// many entries share the same thousands of ancestors.
	checked := map[string]bool{}
	for _, name := range explicit {
		for dir := path.Dir(name); dir != "." && !checked[dir]; dir = path.Dir(dir) {
			checked[dir] = true
			parent, ok := v.entries[dir]
			if !ok {
				// Created as any listed directory is: one deep path
				// implies thousands.
				v.count++
				if v.count > v.lim.MaxEntries {
					return nil, refuse("", "has more than %d entries, counting the directories it implies", v.lim.MaxEntries)
				}
				if err := v.addNames(int64(len(dir))); err != nil {
					return nil, err
				}
				v.entries[dir] = &Entry{Path: dir, Type: TypeDir, Mode: 0o755}
				continue
			}
			switch parent.Type {
			case TypeSymlink:
				return nil, refuse(v.names[name], "is inside %s, which is a symlink", printable(v.names[dir]))
			case TypeFile:
				return nil, refuse(v.names[name], "is inside %s, which is a file", printable(v.names[dir]))
			}
		}
	}
	r := newResolver(v.entries)
	for _, name := range explicit {
		if v.entries[name].Type != TypeSymlink {
			continue
		}
		if _, err := r.link(r.nodes[name], 0); err != nil {
			return nil, refuse(v.names[name], "is a symlink to %s, which %s", printable(v.entries[name].Target), err)
		}
	}
	plan := &Plan{Entries: make([]Entry, 0, len(v.entries)), Size: v.size}
	for _, e := range v.entries {
		plan.Entries = append(plan.Entries, *e)
	}
	sort.Slice(plan.Entries, func(i, j int) bool { return plan.Entries[i].Path < plan.Entries[j].Path })
	return plan, nil
}

// resolver follows symlink targets through the archive's own entries, the
// way the kernel will once they are on disk, and notices any that climb out
// of the prefix. Paths the archive does not name are taken as directories.
//
// It walks a tree of the entries one element at a time, never a path
// joined again at each step: a target's cost grows with its length, not
// with its length squared, which a hostile archive of many long targets
// would otherwise turn into hours of work.
type resolver struct {
	top   *node            // the prefix
	nodes map[string]*node // by path
	done  map[*node]place  // resolved location of each symlink checked
	busy  map[*node]bool   // symlinks being resolved, to find loops
}

// node is a path the archive names, or the prefix itself (entry nil).
type node struct {
	entry  *Entry
	parent *node
	kids   map[string]*node
}

// place is where a walk is: at a path the archive names, or beyond
// elements below it that it does not name. Below a path the archive does
// not name there is nothing it names (finish added every directory above
// an entry), so only how many such elements there are matters.
type place struct {
	at     *node
	beyond int
}

func newResolver(entries map[string]*Entry) *resolver {
	top := &node{kids: map[string]*node{}}
	r := &resolver{top: top, nodes: map[string]*node{".": top}, done: map[*node]place{}, busy: map[*node]bool{}}
	for p, e := range entries {
		r.add(p, e)
	}
	return r
}

// add puts the entry at p in the tree, with the directories above it.
func (r *resolver) add(p string, e *Entry) *node {
	if n, ok := r.nodes[p]; ok {
		if e != nil {
			n.entry = e
		}
		return n
	}
	parent := r.add(path.Dir(p), nil)
	n := &node{entry: e, parent: parent, kids: map[string]*node{}}
	parent.kids[path.Base(p)] = n
	r.nodes[p] = n
	return n
}

type resolveError string

func (e resolveError) Error() string { return string(e) }

// link resolves the symlink at n to where it points.
func (r *resolver) link(n *node, depth int) (place, error) {
	if dest, ok := r.done[n]; ok {
		return dest, nil
	}
	if r.busy[n] || depth > maxLinkHops {
		return place{}, resolveError("loops or passes through too many symlinks")
	}
	r.busy[n] = true
	defer delete(r.busy, n)
	dest, err := r.walk(place{at: n.parent}, n.entry.Target, depth)
	if err != nil {
		return place{}, err
	}
	r.done[n] = dest
	return dest, nil
}

func (r *resolver) walk(pl place, target string, depth int) (place, error) {
	for elem := range strings.SplitSeq(target, "/") {
		switch {
		case elem == "" || elem == ".":
		case elem == ".." && pl.beyond > 0:
			pl.beyond--
		case elem == ".." && pl.at == r.top:
			return place{}, resolveError("escapes the prefix")
		case elem == "..":
			pl.at = pl.at.parent
		case pl.beyond > 0:
			pl.beyond++
		default:
			kid, ok := pl.at.kids[elem]
			switch {
			case !ok:
				pl.beyond = 1
			case kid.entry != nil && kid.entry.Type == TypeSymlink:
				dest, err := r.link(kid, depth+1)
				if err != nil {
					return place{}, err
				}
				pl = dest
			default:
				pl.at = kid
			}
		}
	}
	return pl, nil
}

func formatSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
