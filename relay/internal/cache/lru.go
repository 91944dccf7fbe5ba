package cache

import (
	"os"
	"sort"
	"time"
)

// touch marks a hit, in memory for eviction and on disk (the modification
// time) so that the order survives a restart.
func (c *Cache) touch(hash string) {
	c.mu.Lock()
	e, ok := c.index[hash]
	if ok {
		c.seq++
		e.used = c.seq
	}
	c.mu.Unlock()
	if ok {
		now := time.Now()
		_ = os.Chtimes(c.objectPath(hash), now, now) // best effort: order only
	}
}

// SetPinned replaces the set of artifacts that are never evicted (those the
// office's policy names) and whose fetches go on when their readers leave.
// Invalid names are ignored.
func (c *Cache) SetPinned(hashes []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pinned = make(map[string]bool, len(hashes))
	for _, h := range hashes {
		if ValidateHash(h) == nil {
			c.pinned[h] = true
		}
	}
	c.metrics.pinned.Set(float64(len(c.pinned)))
	// Unpinning may leave the cache over its cap, and so may a restart
	// (New evicts nothing before it knows the pins).
	c.evictLocked()
	c.updateGaugesLocked()
}

// SetExpectedSizes replaces the sizes that the office's policy states for
// the artifacts it names, so that a fetch of one checks for room on the
// disk before it reads a byte of the upstream (see makeRoomLocked).
// The upstream's own statement still decides the size the bytes must have.
func (c *Cache) SetExpectedSizes(sizes map[string]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expected = make(map[string]int64, len(sizes))
	for h, n := range sizes {
		if ValidateHash(h) == nil && n > 0 {
			c.expected[h] = n
		}
	}
}

// evictLocked removes least recently used objects that are not pinned until
// the objects on disk and the fetches in progress fit the cap. Removing a
// file that someone reads is fine: the reader keeps its open file. An
// object whose flight is still registered is not removed: its waiters have
// been told it is done but may not have opened it yet (run, leave); it
// goes once they have, if the cap still cannot keep it.
func (c *Cache) evictLocked() int {
	if c.opts.MaxBytes == 0 {
		return 0
	}
	over := c.stored + c.reserved - c.opts.MaxBytes
	if over <= 0 {
		return 0
	}
	type cand struct {
		hash string
		e    *entry
	}
	var cands []cand
	for h, e := range c.index {
		if !c.pinned[h] && c.flights[h] == nil {
			cands = append(cands, cand{h, e})
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].e.used < cands[j].e.used })
	n := 0
	for _, cd := range cands {
		if over <= 0 {
			break
		}
		if err := os.Remove(c.objectPath(cd.hash)); err != nil && !os.IsNotExist(err) {
			c.logger.Warn("evict: cannot remove object", "sha256", cd.hash, "err", err)
			continue
		}
		delete(c.index, cd.hash)
		c.stored -= cd.e.size
		over -= cd.e.size
		c.metrics.evictions.Inc()
		c.metrics.evictedBytes.Add(float64(cd.e.size))
		n++
		c.logger.Debug("evicted", "sha256", cd.hash, "bytes", cd.e.size)
	}
	if over > 0 {
		c.logger.Warn("cache over its cap: the rest is pinned, being fetched or about to be read",
			"max_bytes", c.opts.MaxBytes, "over_by", over)
	}
	c.updateGaugesLocked()
	return n
}

func (c *Cache) updateGaugesLocked() {
	c.metrics.objects.Set(float64(len(c.index)))
	c.metrics.storedBytes.Set(float64(c.stored))
}
