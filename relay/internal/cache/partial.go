package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// A fetch that stops before its end (the relay stopped, every reader left,
// the file server kept failing) leaves its temp file and a small state file
// saying how far each range got, so that the next fetch of the artifact
// resumes by range instead of starting over, even after a restart. The
// bytes are still checked against the hash at the end; a partial that
// turns out wrong is dropped and fetched whole.
//
// A partial that no fetch uses counts against the cap with the bytes it
// holds, and is evicted as objects are (evictLocked, victimsLocked). A
// fetch of its artifact owns it from the moment it is registered (join)
// until it ends (run): its reservation counts those bytes meanwhile, and
// nothing evicts it.

const (
	partialExt = ".partial"
	stateExt   = ".state"
	// partialMaxAge is how long an untouched partial is kept at start.
	partialMaxAge = 7 * 24 * time.Hour
	// saveEvery is how many bytes a range moves between state saves.
	saveEvery = 8 << 20
)

// partialEntry is a partial fetch that no fetch uses.
type partialEntry struct {
	held int64  // bytes it holds
	size int64  // the artifact's
	used uint64 // Cache.seq when its fetch stopped
}

type partialState struct {
	Size  int64      `json:"size"`
	Parts [][3]int64 `json:"parts"` // off, end, pos
}

func (c *Cache) partialPath(hash string) string {
	return filepath.Join(c.dir, tempDir, hash+partialExt)
}

func (c *Cache) statePath(hash string) string {
	return filepath.Join(c.dir, tempDir, hash+stateExt)
}

// dropPartial removes what an earlier fetch of hash left.
func (c *Cache) dropPartial(hash string) {
	os.Remove(c.partialPath(hash))
	os.Remove(c.statePath(hash))
}

// saveState records how far each range of fl got. Positions only move
// after their bytes are written, so the state never claims bytes that are
// not in the file (a machine crash can still lose unsynced ones; the hash
// catches that).
func (c *Cache) saveState(fl *flight) error {
	fl.saveMu.Lock()
	defer fl.saveMu.Unlock()
	fl.mu.Lock()
	st := partialState{Size: fl.size}
	for _, p := range fl.parts {
		st.Parts = append(st.Parts, [3]int64{p.off, p.end, p.pos})
	}
	fl.mu.Unlock()
	if st.Size < 0 || len(st.Parts) == 0 {
		return nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	path := c.statePath(fl.hash)
	err = os.WriteFile(path+".new", b, 0o600)
	if err == nil {
		return os.Rename(path+".new", path)
	}
	os.Remove(path + ".new")
	if !isDiskFull(err) {
		return err
	}
	// A full disk has no block for a new file, but the state saved when
	// the fetch started has one: overwrite it in place. Not atomic, but
	// a torn state fails decodeState, or claims bytes the hash then
	// rejects; either way they are fetched again.
	f, oerr := os.OpenFile(path, os.O_WRONLY, 0)
	if oerr != nil {
		return err
	}
	_, werr := f.WriteAt(b, 0)
	if werr == nil {
		werr = f.Truncate(int64(len(b)))
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	return werr
}

// loadPartial opens what an earlier fetch of hash left, if it is usable.
func (c *Cache) loadPartial(hash string) (*os.File, []part, int64, bool) {
	b, err := os.ReadFile(c.statePath(hash))
	if err != nil {
		return nil, nil, 0, false
	}
	parts, size, err := decodeState(b)
	if err == nil {
		var f *os.File
		f, err = os.OpenFile(c.partialPath(hash), os.O_RDWR, 0)
		if err == nil {
			fi, serr := f.Stat()
			if serr == nil && fi.Size() <= size {
				return f, parts, size, true
			}
			f.Close()
			err = fmt.Errorf("partial file larger than the artifact")
		}
	}
	c.logger.Warn("dropping an unusable partial fetch", "sha256", hash, "err", err)
	c.dropPartial(hash)
	return nil, nil, 0, false
}

// decodeState checks a state file: ranges in order, covering the artifact
// exactly, positions inside their range.
func decodeState(b []byte) ([]part, int64, error) {
	var st partialState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, 0, fmt.Errorf("state: %w", err)
	}
	if st.Size <= 0 || len(st.Parts) == 0 || len(st.Parts) > 1<<20 {
		return nil, 0, errors.New("state: no size or ranges")
	}
	parts := make([]part, len(st.Parts))
	var at int64
	for i, p := range st.Parts {
		off, end, pos := p[0], p[1], p[2]
		if off != at || end <= off || end > st.Size || pos < off || pos > end {
			return nil, 0, fmt.Errorf("state: range %d (%d-%d at %d) does not fit", i, off, end, pos)
		}
		parts[i] = part{off, end, pos}
		at = end
	}
	if at != st.Size {
		return nil, 0, fmt.Errorf("state: ranges end at %d, artifact has %d bytes", at, st.Size)
	}
	return parts, st.Size, nil
}

// keptPartial is a partial that recover keeps.
type keptPartial struct {
	hash       string
	held, size int64
	mtime      time.Time
}

// keepPartials is recover's rule for the temp directory: a partial with a
// valid state, touched within partialMaxAge, stays; anything else goes.
func (c *Cache) keepPartials(tmp string) ([]keptPartial, error) {
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	var kept []keptPartial
	for _, e := range ents {
		name := e.Name()
		hash, ok := strings.CutSuffix(name, stateExt)
		if !ok || ValidateHash(hash) != nil || !e.Type().IsRegular() {
			continue
		}
		held, size, fi, err := c.inspectPartial(hash)
		if err != nil || time.Since(fi.ModTime()) > partialMaxAge {
			continue
		}
		keep[hash+partialExt], keep[name] = true, true
		kept = append(kept, keptPartial{hash, held, size, fi.ModTime()})
	}
	for _, e := range ents {
		if keep[e.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(tmp, e.Name())); err != nil {
			return nil, err
		}
	}
	if len(kept) > 0 {
		c.logger.Info("keeping partial fetches to resume", "count", len(kept))
	}
	return kept, nil
}

// inspectPartial checks what an earlier fetch of hash left: a regular
// partial file with a valid state that fits it. held is what it holds,
// size the artifact's.
func (c *Cache) inspectPartial(hash string) (held, size int64, fi os.FileInfo, err error) {
	fi, err = os.Lstat(c.partialPath(hash))
	if err != nil {
		return 0, 0, nil, err
	}
	if !fi.Mode().IsRegular() {
		return 0, 0, nil, errors.New("partial fetch is not a regular file")
	}
	b, err := os.ReadFile(c.statePath(hash))
	if err != nil {
		return 0, 0, nil, err
	}
	parts, size, err := decodeState(b)
	if err != nil {
		return 0, 0, nil, err
	}
	if fi.Size() > size {
		return 0, 0, nil, errors.New("partial file larger than the artifact")
	}
	for _, p := range parts {
		held += p.pos - p.off
	}
	if len(parts) == 1 {
		// Written in order, never sized ahead: its length is what it
		// holds, bytes past the last saved position included.
		held = max(held, fi.Size())
	}
	return held, size, fi, nil
}

// notePartialLocked counts what the fetch of hash, which has ended, left
// to resume, as last used now. What cannot be resumed goes.
func (c *Cache) notePartialLocked(hash string) {
	c.takePartialLocked(hash)
	if _, err := os.Lstat(c.partialPath(hash)); errors.Is(err, fs.ErrNotExist) {
		os.Remove(c.statePath(hash)) // nothing kept
		return
	}
	held, size, _, err := c.inspectPartial(hash)
	if err != nil {
		// Stopped before it had a state to resume by (or lost it): its
		// bytes are no use to the next fetch.
		c.logger.Debug("dropping a partial fetch that cannot resume", "sha256", hash, "err", err)
		c.dropPartial(hash)
		return
	}
	c.seq++
	c.partials[hash] = &partialEntry{held: held, size: size, used: c.seq}
	c.held += held
	c.updateGaugesLocked()
}

// takePartialLocked stops counting the partial of hash: a fetch owns it,
// or it is gone.
func (c *Cache) takePartialLocked(hash string) {
	if p, ok := c.partials[hash]; ok {
		delete(c.partials, hash)
		c.held -= p.held
		c.updateGaugesLocked()
	}
}
