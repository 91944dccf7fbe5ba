package store

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// RemoveOffice removes an office with its tokens and policy. Members whose
// home or current office it is go to moveTo first, in the same transaction;
// with moveTo empty it refuses (ErrConflict, naming some of them) while
// there are any. It returns the members it moved.
func (s *Store) RemoveOffice(name, moveTo string) ([]Member, error) {
	var moved []Member
	err := s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bOffices).Get([]byte(name)) == nil {
			return fmt.Errorf("office %s: %w", name, ErrNotFound)
		}
		if moveTo == name {
			return fmt.Errorf("office %s cannot take its own computers: name another office: %w", name, ErrConflict)
		}
		if moveTo != "" && tx.Bucket(bOffices).Get([]byte(moveTo)) == nil {
			return fmt.Errorf("office %s (to move the computers of %s to): %w", moveTo, name, ErrNotFound)
		}
		members, err := list[Member](tx, bMembers, func(m *Member) bool { return m.Office == name || m.Home == name })
		if err != nil {
			return err
		}
		if len(members) > 0 && moveTo == "" {
			var hosts []string
			for _, m := range members {
				hosts = append(hosts, m.Hostname)
			}
			sort.Strings(hosts)
			if len(hosts) > 5 {
				hosts = append(hosts[:5], "...")
			}
			what := fmt.Sprintf("%d computers", len(members))
			if len(members) == 1 {
				what = "a computer"
			}
			return fmt.Errorf("office %s still has %s (%s): say where they go (outpost office rm %s --move-to OTHER; move_to in the API) or move them first: %w",
				name, what, strings.Join(hosts, ", "), name, ErrConflict)
		}
		for _, m := range members {
			if m.Home == name {
				m.Home = moveTo
			}
			if m.Office == name {
				// Until its next check-in places it by address.
				m.Office = moveTo
			}
			if err := putMember(tx, &m); err != nil {
				return err
			}
			moved = append(moved, m)
		}
		if err := removeOfficeComputers(tx, name, moveTo); err != nil {
			return err
		}
		tokens, err := list[Token](tx, bTokens, func(t *Token) bool { return t.Office == name })
		if err != nil {
			return err
		}
		for _, t := range tokens {
			if err := deleteToken(tx, &t); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bPolicies).Delete([]byte(name)); err != nil {
			return err
		}
		if err := putVariants(tx, name, 0, nil); err != nil {
			return err
		}
		// Its permission list goes with it: an office made again under
		// the same name starts with no grants, not the old office's.
		if b := tx.Bucket(bPermissions); b != nil {
			if err := b.Delete([]byte(OfficeScope(name))); err != nil {
				return err
			}
		}
		// So do its release, its patch approvals and since when its hosts
		// had each patch: agents of an office made again under the name
		// would be told the old office's policy, and get its patches.
		if b := tx.Bucket(bReleases); b != nil {
			if err := b.Delete([]byte(name)); err != nil {
				return err
			}
		}
		for _, bucket := range [][]byte{bApprovals, bClean} {
			b := tx.Bucket(bucket)
			if b == nil {
				continue
			}
			prefix := []byte(approvalKey(name, ""))
			c := b.Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return del(tx, bOffices, name)
	})
	if err != nil {
		return nil, err
	}
	return moved, nil
}
