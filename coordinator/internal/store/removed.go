package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A removed member's certificate stays valid under the CA until it ends,
// and a relay checks content requests against the CA alone: so the store
// keeps the ids of removed members for as long as a certificate of theirs
// may live, and relays learn them (RemovedMembers) and refuse them.
var (
	bRemoved = []byte("removed_members")
	// removedVersionKey, in bMeta, counts changes of the list.
	removedVersionKey = []byte("removed_members_version")
)

// RemovedKept is how long a removed member is listed: a member
// certificate lasts a year from its last renewal, which was before the
// removal.
const RemovedKept = 366 * 24 * time.Hour

type removedMember struct {
	Until time.Time `json:"until"`
}

// listRemoved records id as removed at now, and forgets those whose time
// is over, raising the list's version.
func listRemoved(tx *bolt.Tx, id string, now time.Time) error {
	b, err := tx.CreateBucketIfNotExists(bRemoved)
	if err != nil {
		return err
	}
	var over [][]byte
	if err := b.ForEach(func(k, v []byte) error {
		var r removedMember
		if json.Unmarshal(v, &r) == nil && now.After(r.Until) {
			over = append(over, append([]byte(nil), k...))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, k := range over {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	if err := put(tx, bRemoved, id, removedMember{Until: now.Add(RemovedKept)}); err != nil {
		return err
	}
	meta, err := tx.CreateBucketIfNotExists(bMeta)
	if err != nil {
		return err
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], removedVersion(tx)+1)
	return meta.Put(removedVersionKey, v[:])
}

func removedVersion(tx *bolt.Tx) uint64 {
	meta := tx.Bucket(bMeta)
	if meta == nil {
		return 0
	}
	v := meta.Get(removedVersionKey)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// RemovedMembersVersion is the version of the list of removed members; 0
// while no member was ever removed.
func (s *Store) RemovedMembersVersion() (uint64, error) {
	var v uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		v = removedVersion(tx)
		return nil
	})
	return v, err
}

// RemovedMembers is the list of removed members whose certificates may
// still be within their life at now, in order, and its version.
func (s *Store) RemovedMembers(now time.Time) (uint64, []string, error) {
	var v uint64
	var ids []string
	err := s.db.View(func(tx *bolt.Tx) error {
		v = removedVersion(tx)
		b := tx.Bucket(bRemoved)
		if b == nil {
			return nil
		}
		// In the order of their ids, as bbolt keeps keys.
		return b.ForEach(func(k, v []byte) error {
			var r removedMember
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode %s/%s: %w", bRemoved, k, err)
			}
			if !now.After(r.Until) {
				ids = append(ids, string(k))
			}
			return nil
		})
	})
	return v, ids, err
}
