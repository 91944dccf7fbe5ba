package store

import (
	"bytes"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Endpoint scope: named policies that target offices, agents and labels,
// and the per-member variants of an office's signed policy they lead to.
var (
	bNamedPolicies = []byte("named_policies") // name → NamedPolicy
	// office \x00 member id → Variant: a member's own signed policy at the
	// office's current revision, when its effective policy differs from
	// the office's.
	bVariants = []byte("policy_variants")
)

// Targets are what a named policy applies to (see the policy package).
type Targets struct {
	Offices []string `json:"offices"`
	Agents  []string `json:"agents"`
	Labels  []string `json:"labels"`
}

// NamedPolicy is a policy an admin applied by name, with its scope.
type NamedPolicy struct {
	Name     string    `json:"name"`
	Priority int       `json:"priority"`
	Targets  Targets   `json:"targets"`
	YAML     string    `json:"yaml"`
	Applied  time.Time `json:"applied"`
	Created  time.Time `json:"created"`
}

// Variant is one member's own signed policy at an office's revision.
type Variant struct {
	Office   string `json:"office"`
	Member   string `json:"member"`
	Revision uint64 `json:"revision"`
	Signed   []byte `json:"signed"` // a serialized wire.SignedPolicy
}

// PutNamedPolicy creates or replaces a named policy; it reports whether
// it was new. The first creation time is kept.
func (s *Store) PutNamedPolicy(p NamedPolicy) (created bool, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		created, err = putNamed(tx, p)
		return err
	})
	return created, err
}

func putNamed(tx *bolt.Tx, p NamedPolicy) (bool, error) {
	if _, err := tx.CreateBucketIfNotExists(bNamedPolicies); err != nil {
		return false, err
	}
	created := false
	old, err := get[NamedPolicy](tx, bNamedPolicies, p.Name)
	switch {
	case err == nil:
		p.Created = old.Created
	case err == ErrNotFound:
		created = true
		p.Created = p.Applied
	default:
		return false, err
	}
	return created, put(tx, bNamedPolicies, p.Name, p)
}

// NamedChange is a change to a named policy: Put creates or replaces
// one, Delete (when Put is nil) removes one.
type NamedChange struct {
	Put    *NamedPolicy
	Delete string
}

// PublishNamed makes a change to a named policy and stores the offices'
// revisions it gives in one transaction: a crash never leaves the change
// made and the offices not told, nor the other way round. created reports
// whether Put made a new policy.
func (s *Store) PublishNamed(c NamedChange, pubs []Publication, now time.Time) (created bool, out []*Policy, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		if c.Put != nil {
			if created, err = putNamed(tx, *c.Put); err != nil {
				return err
			}
		} else if err = deleteNamed(tx, c.Delete); err != nil {
			return err
		}
		out, err = publish(tx, pubs, now)
		return err
	})
	return created, out, err
}

// NamedPolicy returns one named policy.
func (s *Store) NamedPolicy(name string) (*NamedPolicy, error) {
	var out *NamedPolicy
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		if tx.Bucket(bNamedPolicies) == nil {
			return fmt.Errorf("policy %s: %w", name, ErrNotFound)
		}
		if out, err = get[NamedPolicy](tx, bNamedPolicies, name); err != nil {
			return fmt.Errorf("policy %s: %w", name, err)
		}
		return nil
	})
	return out, err
}

// NamedPolicies lists every named policy, by name.
func (s *Store) NamedPolicies() ([]NamedPolicy, error) {
	var out []NamedPolicy
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		if tx.Bucket(bNamedPolicies) == nil {
			return nil
		}
		out, err = list[NamedPolicy](tx, bNamedPolicies, nil)
		return err
	})
	return out, err
}

// DeleteNamedPolicy removes a named policy.
func (s *Store) DeleteNamedPolicy(name string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return deleteNamed(tx, name) })
}

func deleteNamed(tx *bolt.Tx, name string) error {
	b := tx.Bucket(bNamedPolicies)
	if b == nil || b.Get([]byte(name)) == nil {
		return fmt.Errorf("policy %s: %w", name, ErrNotFound)
	}
	return b.Delete([]byte(name))
}

func variantKey(office, member string) []byte { return []byte(office + "\x00" + member) }

// putVariants replaces every variant of office with variants (member id →
// signed bytes) at revision rev.
func putVariants(tx *bolt.Tx, office string, rev uint64, variants map[string][]byte) error {
	b := tx.Bucket(bVariants)
	if b == nil {
		if len(variants) == 0 {
			return nil
		}
		var err error
		if b, err = tx.CreateBucket(bVariants); err != nil {
			return err
		}
	}
	prefix := variantKey(office, "")
	var stale [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		stale = append(stale, append([]byte(nil), k...))
	}
	for _, k := range stale {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	for id, signed := range variants {
		if err := put(tx, bVariants, string(variantKey(office, id)), Variant{Office: office, Member: id, Revision: rev, Signed: signed}); err != nil {
			return err
		}
	}
	return nil
}

// Variant returns a member's own policy in an office, if it has one at
// the office's current revision (ErrNotFound otherwise).
func (s *Store) Variant(office, member string) (*Variant, error) {
	var out *Variant
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		if tx.Bucket(bVariants) == nil {
			return fmt.Errorf("policy variant of %s in %s: %w", member, office, ErrNotFound)
		}
		if out, err = get[Variant](tx, bVariants, string(variantKey(office, member))); err != nil {
			return fmt.Errorf("policy variant of %s in %s: %w", member, office, err)
		}
		return nil
	})
	return out, err
}

// VariantMembers lists the members of an office that have a policy of
// their own at its current revision, sorted.
func (s *Store) VariantMembers(office string) ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bVariants)
		if b == nil {
			return nil
		}
		prefix := variantKey(office, "")
		c := b.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			out = append(out, string(k[len(prefix):]))
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}
