package store

import (
	"bytes"
	"slices"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// Every check-in reads every office (placement), and its answer carries
// the revocation list, made from every user: decoded from the file each
// time, a check-in cost what the fleet's offices and users are, not what
// it said. What is read so is kept decoded in memory, and counted
// changes say when it is out of date. The file stays the truth: a change
// is counted only once its transaction committed (bbolt runs OnCommit
// handlers once the new state is readable), and a reader takes the count
// before it reads, so what it keeps under a count is never older than the
// count says.

// openStores finds the Store of a transaction: the writes that change
// what is cached (put, del) are free functions of a transaction.
var openStores sync.Map // *bolt.DB → *Store

// changes counts the committed transactions that wrote each cached
// bucket.
type changes struct {
	users, offices atomic.Uint64
}

// counter is the count of changes to bucket, nil when nothing caches it.
func (c *changes) counter(bucket []byte) *atomic.Uint64 {
	switch {
	case bytes.Equal(bucket, bUsers):
		return &c.users
	case bytes.Equal(bucket, bOffices):
		return &c.offices
	}
	return nil
}

// changed counts a write to bucket in tx, once tx commits. Every write
// to a cached bucket goes through put or del, which call it.
func changed(tx *bolt.Tx, bucket []byte) {
	v, ok := openStores.Load(tx.DB())
	if !ok {
		return
	}
	if n := v.(*Store).changes.counter(bucket); n != nil {
		tx.OnCommit(func() { n.Add(1) })
	}
}

// del deletes key from bucket, counting the change.
func del(tx *bolt.Tx, bucket []byte, key string) error {
	changed(tx, bucket)
	return tx.Bucket(bucket).Delete([]byte(key))
}

// UsersVersion changes whenever a user is added, changed or removed, once
// the change is stored: what is made from the users alone (the
// revocation list) may be kept while it stays the same. Read it before
// reading the users.
func (s *Store) UsersVersion() uint64 { return s.changes.users.Load() }

// officeCache is every office as of changes.offices = version.
type officeCache struct {
	version uint64
	list    []Office // by name
	byName  map[string]*Office
}

// cachedOffices is every office, decoded again only after an office
// changed.
func (s *Store) cachedOffices() (*officeCache, error) {
	version := s.changes.offices.Load() // before the read: see above
	if c := s.offices.Load(); c != nil && c.version == version {
		return c, nil
	}
	var all []Office
	if err := s.db.View(func(tx *bolt.Tx) (err error) {
		all, err = list[Office](tx, bOffices, nil)
		return err
	}); err != nil {
		return nil, err
	}
	c := &officeCache{version: version, list: all, byName: make(map[string]*Office, len(all))}
	for i := range all {
		c.byName[all[i].Name] = &all[i]
	}
	// A reader that raced this one may store an older count after it:
	// the next read then decodes again, and nothing stale is served.
	s.offices.Store(c)
	return c, nil
}

// OfficesReadOnly is Offices for what reads every office at every call
// (check-ins): the slice and everything its offices hold are shared with
// every other caller until an office changes, and must not be changed.
func (s *Store) OfficesReadOnly() ([]Office, error) {
	c, err := s.cachedOffices()
	if err != nil {
		return nil, err
	}
	return c.list, nil
}

// clone is a copy of o that shares nothing with it.
func (o *Office) clone() Office {
	c := *o
	c.Relays = slices.Clone(o.Relays)
	c.Subnets = slices.Clone(o.Subnets)
	c.Egress = slices.Clone(o.Egress)
	if o.AllowPlainHTTP != nil {
		v := *o.AllowPlainHTTP
		c.AllowPlainHTTP = &v
	}
	c.GossipKey = bytes.Clone(o.GossipKey)
	if o.GossipKeys != nil {
		c.GossipKeys = make([][]byte, len(o.GossipKeys))
		for i, k := range o.GossipKeys {
			c.GossipKeys[i] = bytes.Clone(k)
		}
	}
	return c
}
