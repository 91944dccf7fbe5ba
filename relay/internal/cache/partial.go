package cache

import (
	"encoding/json"
	"errors"
	"fmt"
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

const (
	partialExt = ".partial"
	stateExt   = ".state"
	// partialMaxAge is how long an untouched partial is kept at start.
	partialMaxAge = 7 * 24 * time.Hour
	// saveEvery is how many bytes a range moves between state saves.
	saveEvery = 8 << 20
)

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

// keepPartials is recover's rule for the temp directory: a partial with a
// valid state, touched within partialMaxAge, stays; anything else goes.
func (c *Cache) keepPartials(tmp string) error {
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		hash, ok := strings.CutSuffix(name, stateExt)
		if !ok || ValidateHash(hash) != nil || !e.Type().IsRegular() {
			continue
		}
		fi, err := os.Stat(filepath.Join(tmp, hash+partialExt))
		if err != nil || !fi.Mode().IsRegular() || time.Since(fi.ModTime()) > partialMaxAge {
			continue
		}
		b, err := os.ReadFile(filepath.Join(tmp, name))
		if err != nil {
			continue
		}
		if _, size, err := decodeState(b); err == nil && fi.Size() <= size {
			keep[hash+partialExt], keep[name] = true, true
		}
	}
	for _, e := range ents {
		if keep[e.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(tmp, e.Name())); err != nil {
			return err
		}
	}
	if n := len(keep) / 2; n > 0 {
		c.logger.Info("keeping partial fetches to resume", "count", n)
	}
	return nil
}
