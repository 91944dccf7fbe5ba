package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Room on the disk. MaxBytes caps what the cache keeps, but the disk can
// fill first: with no cap (the default), a cap larger than the disk, or
// other files on the same file system. Bytes that cannot be kept are not
// worth carrying over the WAN, so a fetch of known size (stated by the
// office's policy, by the upstream's headers, or by a partial to resume)
// first checks that what it still has to write fits beside what the other
// fetches in progress still have to write. If it does not, unpinned objects
// go, least recently used first, then partial fetches that nothing resumes
// now, oldest first; if even that cannot make room (pinned objects hold
// the rest) nothing is evicted and the fetch does not start: it fails with
// a *DiskFullError before a byte is read. A write that still finds the
// disk full (ENOSPC: the check is an estimate, or something else filled the
// disk) makes room the same way and is tried once more.

// ErrDiskFull means the cache's disk has no room for an artifact, even
// after evicting every unpinned object that could make room. Errors that
// wrap it are *DiskFullError.
var ErrDiskFull = errors.New("cache disk full")

// DiskFullError says how much room an artifact needed and how much there
// was.
type DiskFullError struct {
	Hash string
	Dir  string
	// Need is what the fetch still had to write; Free what the disk had
	// for it, after evicting and less what other fetches in progress still
	// write. Evicted is what was evicted for this fetch.
	Need, Free, Evicted int64
	// Err is the write that failed, if one did.
	Err error
}

func (e *DiskFullError) Error() string {
	return fmt.Sprintf("%v: need %s for %s, %s free in %s after evicting %s of unpinned objects",
		ErrDiskFull, formatBytes(e.Need), e.Hash, formatBytes(max(e.Free, 0)), e.Dir, formatBytes(e.Evicted))
}

func (e *DiskFullError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrDiskFull, e.Err}
	}
	return []error{ErrDiskFull}
}

// formatBytes is n in binary units, with the exact count below 1 KiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// freeLocked is the room the disk has for fl: what the file system reports
// free, less what the other fetches in progress have yet to write. ok is
// false when the free space cannot be known.
func (c *Cache) freeLocked(fl *flight) (free int64, ok bool) {
	n, err := c.opts.FreeSpace(c.dir)
	if err != nil || n < 0 {
		if err != nil {
			c.logger.Debug("cannot tell the free disk space", "dir", c.dir, "err", err)
		}
		return 0, false
	}
	for _, other := range c.flights {
		if other != fl && other.reservedBytes > 0 {
			n -= max(other.reservedBytes-other.written.Load(), 0)
		}
	}
	return n, true
}

// victim is something that can be removed to make room.
type victim struct {
	hash    string
	size    int64
	partial bool
	order   int64 // older first
}

// victimsLocked lists what may go to make room for fl, in the order it
// goes: unpinned objects, least recently used first, then partial fetches
// that no fetch is running for, oldest first.
func (c *Cache) victimsLocked() []victim {
	var objs []victim
	for h, e := range c.index {
		// An object whose flight is registered is held for its waiters
		// (see evictLocked).
		if !c.pinned[h] && c.flights[h] == nil {
			objs = append(objs, victim{hash: h, size: e.size, order: int64(e.used)})
		}
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].order < objs[j].order })
	var parts []victim
	ents, _ := os.ReadDir(filepath.Join(c.dir, tempDir))
	for _, e := range ents {
		hash, ok := strings.CutSuffix(e.Name(), partialExt)
		if !ok || ValidateHash(hash) != nil || c.flights[hash] != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		// A partial may be sparse: its state says how much it holds.
		size := fi.Size()
		if b, err := os.ReadFile(c.statePath(hash)); err == nil {
			if ps, _, err := decodeState(b); err == nil {
				size = 0
				for _, p := range ps {
					size += p.pos - p.off
				}
			}
		}
		parts = append(parts, victim{hash: hash, size: size, partial: true, order: fi.ModTime().UnixNano()})
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].order < parts[j].order })
	return append(objs, parts...)
}

// makeRoomLocked makes sure that need more bytes of fl fit on the disk,
// evicting if that makes them fit, or returns a *DiskFullError. cause is
// the write that failed with ENOSPC, if one did: then the disk is known
// to be full even where its free space cannot be measured.
func (c *Cache) makeRoomLocked(fl *flight, need int64, cause error) error {
	free, ok := c.freeLocked(fl)
	if !ok {
		if cause == nil {
			return nil // nothing to go by: try, and handle ENOSPC if it comes
		}
		free = 0 // the disk has just said it is full
	}
	if free >= need {
		return nil
	}
	victims := c.victimsLocked()
	var could int64
	for _, v := range victims {
		could += v.size
	}
	// Evicting what cannot make enough room would lose hits for nothing.
	if free+could >= need {
		var evicted int64
		var n int
		for _, v := range victims {
			if free >= need {
				break
			}
			if !c.removeVictimLocked(v) {
				continue
			}
			// Counted, not measured: some file systems return the space
			// of a removed file only later. A write that still finds the
			// disk full measures again.
			free += v.size
			evicted += v.size
			n++
		}
		fl.evictedBytes += evicted
		c.updateGaugesLocked()
		c.logger.Info("evicted to make room on the disk", "sha256", fl.hash, "need", need, "evicted_bytes", evicted,
			"evicted", n, "dir", c.dir)
	}
	if free >= need {
		return nil
	}
	c.metrics.diskFull.Inc()
	return &DiskFullError{Hash: fl.hash, Dir: c.dir, Need: need, Free: free, Evicted: fl.evictedBytes, Err: cause}
}

// removeVictimLocked removes an object or an idle partial fetch.
func (c *Cache) removeVictimLocked(v victim) bool {
	if v.partial {
		if err := os.Remove(c.partialPath(v.hash)); err != nil && !os.IsNotExist(err) {
			c.logger.Warn("make room: cannot remove a partial fetch", "sha256", v.hash, "err", err)
			return false
		}
		os.Remove(c.statePath(v.hash))
		c.logger.Info("dropped a partial fetch to make room on the disk", "sha256", v.hash, "bytes", v.size)
		return true
	}
	if err := os.Remove(c.objectPath(v.hash)); err != nil && !os.IsNotExist(err) {
		c.logger.Warn("make room: cannot remove object", "sha256", v.hash, "err", err)
		return false
	}
	e := c.index[v.hash]
	delete(c.index, v.hash)
	c.stored -= e.size
	c.metrics.evictions.Inc()
	c.metrics.evictedBytes.Add(float64(e.size))
	c.logger.Debug("evicted to make room on the disk", "sha256", v.hash, "bytes", e.size)
	return true
}

// reserve announces that fl fetches size bytes: they count against the cap
// (evicting to keep under it) and must fit on the disk beside the other
// fetches in progress (see makeRoomLocked). A reservation of the same size
// is kept; one of another size (the policy and the upstream disagree) is
// replaced.
func (c *Cache) reserve(fl *flight, size int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fl.reservedBytes == size {
		return nil
	}
	c.reserved -= fl.reservedBytes
	fl.reservedBytes = 0
	if err := c.makeRoomLocked(fl, size-fl.written.Load(), nil); err != nil {
		return err
	}
	c.reserved += size
	fl.reservedBytes = size
	c.evictLocked()
	return nil
}

// repeatedFull records whether the failed fetch of hash failed for a full
// disk, and reports whether the one before it did too: the same failure
// again is no news worth a warning.
func (c *Cache) repeatedFull(hash string, full bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !full {
		delete(c.fullLogged, hash)
		return false
	}
	if c.fullLogged[hash] {
		return true
	}
	if len(c.fullLogged) >= 1024 { // any artifact a client names can be here
		clear(c.fullLogged)
	}
	c.fullLogged[hash] = true
	return false
}

// stillToWrite is what fl has yet to write: the rest of its size if known,
// and at least more.
func (fl *flight) stillToWrite(more int64) int64 {
	fl.mu.Lock()
	size := fl.size
	fl.mu.Unlock()
	if size > 0 {
		return max(size-fl.written.Load(), more)
	}
	return more
}

// roomAfterFull handles a write of fl that failed with ENOSPC (cause): it
// makes room for what fl still has to write (at least more bytes), or
// returns a *DiskFullError.
func (c *Cache) roomAfterFull(fl *flight, more int64, cause error) error {
	need := fl.stillToWrite(more)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logger.Info("disk full while fetching: making room and writing again", "sha256", fl.hash, "need", need)
	return c.makeRoomLocked(fl, need, cause)
}

// fullAgain is the error for a write that found the disk full even after
// room was made for it.
func (c *Cache) fullAgain(fl *flight, more int64, cause error) error {
	need := fl.stillToWrite(more)
	c.mu.Lock()
	defer c.mu.Unlock()
	free, _ := c.freeLocked(fl)
	c.metrics.diskFull.Inc()
	return &DiskFullError{Hash: fl.hash, Dir: c.dir, Need: need, Free: free, Evicted: fl.evictedBytes, Err: cause}
}

// writeAt writes b at off of fl's temp file; a full disk gets room made
// and one more try.
func (c *Cache) writeAt(fl *flight, f *os.File, b []byte, off int64) error {
	n, err := f.WriteAt(b, off)
	if err == nil || !isDiskFull(err) {
		return err
	}
	rest := b[n:]
	if rerr := c.roomAfterFull(fl, int64(len(rest)), err); rerr != nil {
		return rerr
	}
	if _, err := f.WriteAt(rest, off+int64(n)); err != nil {
		if isDiskFull(err) {
			return c.fullAgain(fl, int64(len(rest)), err)
		}
		return err
	}
	return nil
}
