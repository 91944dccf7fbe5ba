package cache

import (
	"errors"
	"fmt"
	"os"
	"sort"
)

// Room on the disk. MaxBytes caps what the cache keeps, but the disk can
// fill first: with no cap (the default), a cap larger than the disk, or
// other files on the same file system. Bytes that cannot be kept are not
// worth carrying over the WAN, so a fetch of known size (stated by the
// office's policy, by the upstream's headers, or by a partial to resume)
// first checks that what it still has to write fits beside what the other
// fetches in progress still have to write. If it does not, unpinned objects
// and partial fetches that nothing resumes now go, least recently used
// first (see victimsLocked), then those of pinned artifacts; if even that
// cannot make room (pinned objects hold the rest) nothing is evicted and
// the fetch does not start: it fails with
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
	size    int64 // what removing it frees
	partial bool
	// tooBig: the cap cannot keep its artifact (cannotKeepLocked).
	tooBig bool
	order  uint64 // last use, older first
}

// victimsLocked lists what may go to make room, in the order it goes:
// what the cap cannot keep, then unpinned objects and partial fetches
// that no fetch uses, least recently used first. With pinnedPartials (a
// full disk, not the cap), the partials of pinned artifacts follow,
// oldest first: the cap keeps them as it keeps pinned objects, but a disk
// that has no room for a pinned artifact can make it from them.
func (c *Cache) victimsLocked(room int64, pinnedPartials bool) []victim {
	var vs, pinned []victim
	for h, e := range c.index {
		// An object whose flight is registered is held for its waiters
		// (see evictLocked).
		if !c.pinned[h] && c.flights[h] == nil {
			vs = append(vs, victim{hash: h, size: e.size, tooBig: c.cannotKeepLocked(h, e.size, room), order: e.used})
		}
	}
	for h, p := range c.partials {
		if c.flights[h] != nil {
			continue // a fetch uses it
		}
		v := victim{hash: h, size: p.held, partial: true, tooBig: c.cannotKeepLocked(h, p.size, room), order: p.used}
		switch {
		case !c.pinned[h]:
			vs = append(vs, v)
		case pinnedPartials:
			pinned = append(pinned, v)
		}
	}
	sort.Slice(vs, func(i, j int) bool {
		if vs[i].tooBig != vs[j].tooBig {
			return vs[i].tooBig
		}
		return vs[i].order < vs[j].order
	})
	sort.Slice(pinned, func(i, j int) bool { return pinned[i].order < pinned[j].order })
	return append(vs, pinned...)
}

// makeRoomLocked makes sure that need more bytes of fl fit on the disk,
// evicting if that makes them fit, or returns a *DiskFullError. cause is
// the write that failed with ENOSPC, if one did: then the disk is known
// to be full even where its free space cannot be measured. A fetch of an
// artifact the cap cannot keep (cannotKeepLocked, by its reservation, or
// by what it has written when the upstream stated no size) evicts only
// what the cap cannot keep either: it is served from the room the disk
// has beside the cache, or not at all.
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
	room := c.roomLocked()
	victims := c.victimsLocked(room, true)
	// An artifact of unstated size is as large as what it has written.
	if c.cannotKeepLocked(fl.hash, max(fl.reservedBytes, fl.written.Load()), room) {
		// Served, not kept: it may take the room of what the cap could
		// not keep either, never of what it keeps.
		n := 0
		for n < len(victims) && victims[n].tooBig {
			n++
		}
		victims = victims[:n]
	}
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
			c.logger.Warn("evict: cannot remove a partial fetch", "sha256", v.hash, "err", err)
			return false
		}
		os.Remove(c.statePath(v.hash))
		c.takePartialLocked(v.hash)
		c.logger.Info("evicted a partial fetch to make room", "sha256", v.hash, "bytes", v.size)
		return true
	}
	if err := os.Remove(c.objectPath(v.hash)); err != nil && !os.IsNotExist(err) {
		c.logger.Warn("evict: cannot remove object", "sha256", v.hash, "err", err)
		return false
	}
	e := c.index[v.hash]
	delete(c.index, v.hash)
	c.stored -= e.size
	c.metrics.evictions.Inc()
	c.metrics.evictedBytes.Add(float64(e.size))
	if v.tooBig {
		c.logger.Info("not keeping an artifact larger than the cap leaves beside the pinned ones; its readers have it",
			"sha256", v.hash, "bytes", e.size, "max_bytes", c.opts.MaxBytes)
	} else {
		c.logger.Debug("evicted", "sha256", v.hash, "bytes", e.size)
	}
	return true
}

// reserve announces that fl fetches size bytes: they count against the cap
// (evicting to keep under it), unless the cap cannot keep the artifact,
// and must fit on the disk beside the other fetches in progress (see
// makeRoomLocked). A reservation of the same size is kept; one of another
// size (the policy and the upstream disagree) is replaced.
func (c *Cache) reserve(fl *flight, size int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fl.reservedBytes == size {
		return nil
	}
	// Set first: makeRoomLocked asks whether the cap can keep it.
	fl.reservedBytes = size
	if err := c.makeRoomLocked(fl, size-fl.written.Load(), nil); err != nil {
		fl.reservedBytes = 0
		return err
	}
	if c.cannotKeepLocked(fl.hash, size, c.roomLocked()) {
		c.logger.Info("artifact larger than the cache's cap leaves beside its pinned ones: serving it without keeping it",
			"sha256", fl.hash, "bytes", size, "max_bytes", c.opts.MaxBytes)
	}
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
