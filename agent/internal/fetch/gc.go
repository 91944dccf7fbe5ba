package fetch

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// Garbage collection of the content cache: a mark and sweep by hash name.
// Every policy run marks what the current and the previous policy name;
// an artifact neither names is removed (with its partial download and
// chunk bookkeeping) once nothing has named it, nor a peer been served
// it, for a grace period: office peers still fetch it from this agent
// during a rollout, and an admin may roll back. An artifact being fetched
// or served at that moment is never removed. Only files named like this
// agent's own content files are touched, and never through a symlink.

// ContentGrace is how long an artifact no policy names any more is kept
// after it was last named or last served to a peer.
const ContentGrace = 24 * time.Hour

// usedEvery is how much "last named or served" may lag: it is written to
// disk at most that often per artifact.
const usedEvery = time.Hour

// contentFile is a file of the cache: the artifact (hash alone), its
// partial downloads (.part whole, .chunked in chunks), the chunk sidecar
// and its temporary files.
var contentFile = regexp.MustCompile(`^(?:([0-9a-f]{64})(?:\.part|\.chunked|\.chunks\.json|\.chunks\.json\.tmp)?|\.([0-9a-f]{64})\.chunks\.json\.tmp-[0-9]+)$`)

// contentHash is the artifact a content file belongs to, or "".
func contentHash(name string) string {
	m := contentFile.FindStringSubmatch(name)
	if m == nil {
		return ""
	}
	return m[1] + m[2]
}

// Named is the set of artifacts the policies name (nil ones are skipped).
func Named(ps ...*wire.Policy) map[string]bool {
	out := map[string]bool{}
	for _, p := range ps {
		for _, it := range p.GetItems() {
			if sha := it.GetArtifact().GetSha256(); hexSHA.MatchString(sha) {
				out[sha] = true
			}
		}
	}
	return out
}

func (f *Fetcher) usedFile() string { return filepath.Join(f.dir, "used.json") }

func (f *Fetcher) loadUsed() {
	b, err := os.ReadFile(f.usedFile())
	if err != nil {
		return
	}
	var m map[string]int64
	if json.Unmarshal(b, &m) != nil {
		return
	}
	for sha, at := range m {
		if hexSHA.MatchString(sha) {
			f.used[sha] = time.Unix(at, 0)
		}
	}
}

// markUsed books that sha was named or served at t.
func (f *Fetcher) markUsed(sha string, t time.Time) {
	f.hmu.Lock()
	defer f.hmu.Unlock()
	if t.Sub(f.used[sha]) >= usedEvery {
		f.used[sha] = t
		f.usedDirty = true
	}
}

func (f *Fetcher) saveUsed() {
	f.hmu.Lock()
	if !f.usedDirty {
		f.hmu.Unlock()
		return
	}
	m := make(map[string]int64, len(f.used))
	for sha, at := range f.used {
		m[sha] = at.Unix()
	}
	f.usedDirty = false
	f.hmu.Unlock()
	b, err := json.Marshal(m)
	if err == nil {
		err = fsutil.WriteFileAtomic(f.usedFile(), b, 0o600)
	}
	if err != nil {
		// Kept in memory; a restart falls back on the files' times.
		f.log.Debug("keep when content was last used", "err", err)
		f.hmu.Lock()
		f.usedDirty = true
		f.hmu.Unlock()
	}
}

// cached is what the cache holds of one artifact.
type cached struct {
	files []string // names in the content directory
	bytes int64
	last  time.Time // the newest file's modification time
}

// Collect marks the artifacts in named as used now and removes the
// others whose files are older than grace and that were neither named nor
// served to a peer for grace, unless they are being fetched or served
// right now. It logs what it removed and returns how many bytes.
func (f *Fetcher) Collect(named map[string]bool, grace time.Duration) int64 {
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		f.log.Warn("content garbage collection: read the cache", "err", err)
		return 0
	}
	now := time.Now()
	cache := map[string]*cached{}
	for _, e := range entries {
		sha := contentHash(e.Name())
		if sha == "" || !e.Type().IsRegular() {
			continue // not a content file of this agent's, or a symlink, a directory...
		}
		info, err := e.Info() // lstat: a symlink is never followed
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		c := cache[sha]
		if c == nil {
			c = &cached{}
			cache[sha] = c
		}
		c.files = append(c.files, e.Name())
		c.bytes += info.Size()
		if info.ModTime().After(c.last) {
			c.last = info.ModTime()
		}
	}
	for sha := range named {
		if cache[sha] != nil {
			f.markUsed(sha, now)
		}
	}
	f.hmu.Lock()
	for sha := range f.used {
		if cache[sha] == nil {
			delete(f.used, sha)
			f.usedDirty = true
		}
	}
	f.hmu.Unlock()

	shas := make([]string, 0, len(cache))
	for sha := range cache {
		shas = append(shas, sha)
	}
	sort.Strings(shas)
	var total int64
	untracked := false
	for _, sha := range shas {
		c := cache[sha]
		if named[sha] {
			continue
		}
		last := c.last
		f.hmu.Lock()
		if u := f.used[sha]; u.After(last) {
			last = u
		}
		f.hmu.Unlock()
		if now.Sub(last) < grace {
			continue
		}
		n, dropped, name := f.remove(sha, c)
		if n < 0 {
			continue // in use
		}
		untracked = untracked || dropped
		total += n
		args := []any{"artifact", sha[:12], "bytes", n, "files", len(c.files), "unused_for", now.Sub(last).Round(time.Minute).String()}
		if name != "" {
			args = append(args, "name", name)
		}
		f.log.Info("removed cached content no policy names any more", args...)
	}
	if total > 0 {
		f.gcBytes.Add(float64(total))
		f.log.Info("content garbage collection", "removed_bytes", total)
	}
	f.saveUsed()
	if untracked && f.onHoldings != nil {
		f.onHoldings() // peers learn it is gone
	}
	return total
}

// remove deletes the files of sha unless it is being fetched or served:
// then it returns -1. dropped tells whether peers were offered chunks of
// it; name is its name, if known.
func (f *Fetcher) remove(sha string, c *cached) (n int64, dropped bool, name string) {
	lock := f.lock(sha)
	if !lock.TryLock() {
		return -1, false, "" // being fetched (Get holds it throughout)
	}
	defer lock.Unlock()
	if h := f.lookup(sha); h != nil {
		h.mu.Lock()
		if h.serving > 0 || h.fetching {
			h.mu.Unlock()
			return -1, false, ""
		}
		// From now on nothing of it is offered or opened for peers.
		h.have, h.complete = newBitset(h.n), false
		name = h.a.GetName()
		h.mu.Unlock()
		f.hmu.Lock()
		if f.held[sha] == h {
			delete(f.held, sha)
			dropped = true
		}
		f.hmu.Unlock()
	}
	// A sidecar goes before the partial it speaks for: a kill between the
	// two must not leave a sidecar whose chunks are gone.
	sort.SliceStable(c.files, func(i, j int) bool { return isSidecar(c.files[i]) && !isSidecar(c.files[j]) })
	for _, file := range c.files {
		path := filepath.Join(f.dir, file)
		// Checked again just before: still a regular file (os.Remove
		// removes a symlink itself, never what it points to).
		info, err := os.Lstat(path)
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		if err := os.Remove(path); err != nil {
			f.log.Warn("content garbage collection: remove", "file", file, "err", err)
			continue
		}
		n += info.Size()
	}
	f.hmu.Lock()
	delete(f.used, sha)
	f.usedDirty = true
	f.hmu.Unlock()
	return n, dropped, name
}

func isSidecar(name string) bool {
	return strings.HasSuffix(name, ".chunks.json") || strings.HasSuffix(name, ".chunks.json.tmp")
}
