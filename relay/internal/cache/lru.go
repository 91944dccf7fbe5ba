package cache

import (
	"math"
	"os"
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

// roomLocked is what the cap leaves for unpinned artifacts: the cap less
// the pinned ones' objects, fetches in progress and partials. With no cap
// there is no limit.
func (c *Cache) roomLocked() int64 {
	if c.opts.MaxBytes == 0 {
		return math.MaxInt64
	}
	room := c.opts.MaxBytes
	for h := range c.pinned {
		if e := c.index[h]; e != nil {
			room -= e.size
		} else if fl := c.flights[h]; fl != nil && fl.reservedBytes > 0 {
			room -= fl.reservedBytes
		} else if p := c.partials[h]; p != nil {
			room -= p.held
		}
	}
	return room
}

// cannotKeepLocked reports whether an artifact of size bytes is one the
// cap cannot keep: unpinned, and larger than room (roomLocked). Keeping
// it would take evicting every other unpinned artifact, and still leave
// the cache over its cap; so it is served but not kept, as a caching proxy
// does with an object larger than its cache.
func (c *Cache) cannotKeepLocked(hash string, size, room int64) bool {
	return !c.pinned[hash] && size > room
}

// evictLocked removes unpinned objects and idle partial fetches, least
// recently used first, until they, the pinned ones and the fetches in
// progress fit the cap. Removing a file that someone reads is fine: the
// reader keeps its open file. An object whose flight is still registered
// is not removed: its waiters have been told it is done but may not have
// opened it yet (run, leave); it goes once they have, if the cap still
// cannot keep it. Nor is a partial that a fetch uses.
//
// An artifact the cap cannot keep (cannotKeepLocked) does not count while
// it is fetched or held for its readers, so that nothing is evicted for
// it, and once released it goes before anything else: it is served, not
// kept.
func (c *Cache) evictLocked() int {
	if c.opts.MaxBytes == 0 {
		return 0
	}
	used := c.stored + c.held
	for _, fl := range c.flights {
		used += fl.reservedBytes
	}
	if used <= c.opts.MaxBytes {
		return 0
	}
	room := c.roomLocked()
	for h, fl := range c.flights {
		if c.cannotKeepLocked(h, fl.reservedBytes, room) {
			used -= fl.reservedBytes
		}
		if e := c.index[h]; e != nil && c.cannotKeepLocked(h, e.size, room) {
			used -= e.size
		}
	}
	over := used - c.opts.MaxBytes
	if over <= 0 {
		return 0
	}
	n := 0
	for _, v := range c.victimsLocked(room, false) {
		if over <= 0 {
			break
		}
		if !c.removeVictimLocked(v) {
			continue
		}
		over -= v.size
		n++
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
	c.metrics.partialBytes.Set(float64(c.held))
}
