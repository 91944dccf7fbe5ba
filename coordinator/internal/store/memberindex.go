package store

import (
	"bytes"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bMemberOffices indexes members by office: key office NUL id, no value.
// An office's members are read at every check-in (seeds), on every
// revision (who to tell) and on every publish; with the index that costs
// the office's size, not the fleet's.
var bMemberOffices = []byte("member-offices")

func memberOfficeKey(office, id string) []byte {
	return append(append([]byte(office), 0), id...)
}

// indexMembers builds the index when the store predates it.
func indexMembers(tx *bolt.Tx) error {
	if tx.Bucket(bMemberOffices) != nil {
		return nil
	}
	idx, err := tx.CreateBucket(bMemberOffices)
	if err != nil {
		return err
	}
	return tx.Bucket(bMembers).ForEach(func(k, v []byte) error {
		var m struct{ Office string }
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("decode %s/%s: %w", bMembers, k, err)
		}
		return idx.Put(memberOfficeKey(m.Office, string(k)), nil)
	})
}

// putMember stores m and keeps the index and the members' summaries
// (memberstate.go): every write of a member goes through it.
func putMember(tx *bolt.Tx, m *Member) error {
	idx := tx.Bucket(bMemberOffices)
	if v := tx.Bucket(bMembers).Get([]byte(m.ID)); v != nil {
		var old struct{ Office string }
		if err := json.Unmarshal(v, &old); err != nil {
			return fmt.Errorf("decode %s/%s: %w", bMembers, m.ID, err)
		}
		if old.Office != m.Office {
			if err := idx.Delete(memberOfficeKey(old.Office, m.ID)); err != nil {
				return err
			}
		}
	}
	if err := idx.Put(memberOfficeKey(m.Office, m.ID), nil); err != nil {
		return err
	}
	memberWritten(tx, m.ID, m)
	return put(tx, bMembers, m.ID, m)
}

// deleteMember removes m and its index entry.
func deleteMember(tx *bolt.Tx, m *Member) error {
	if err := tx.Bucket(bMemberOffices).Delete(memberOfficeKey(m.Office, m.ID)); err != nil {
		return err
	}
	memberWritten(tx, m.ID, nil)
	return tx.Bucket(bMembers).Delete([]byte(m.ID))
}

// officeMembers reads the members of one office by the index.
func officeMembers(tx *bolt.Tx, office string) ([]Member, error) {
	var out []Member
	prefix := memberOfficeKey(office, "")
	c := tx.Bucket(bMemberOffices).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		id := string(k[len(prefix):])
		m, err := get[Member](tx, bMembers, id)
		if err != nil {
			return nil, fmt.Errorf("member %s (indexed in office %s): %w", id, office, err)
		}
		if m.Office != office {
			return nil, fmt.Errorf("member %s is indexed in office %s but is in %q", id, office, m.Office)
		}
		out = append(out, *m)
	}
	return out, nil
}
