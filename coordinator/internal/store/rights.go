package store

import (
	"slices"

	bolt "go.etcd.io/bbolt"
)

// RightOrder is the order rights are shown in.
var RightOrder = []string{"view", "control", "command", "files", "manage"}

// GrantedRights is what the subjects in names get from lists: every allow
// entry naming one adds its rights, every deny entry takes them away,
// whatever list or order it is in. Hosts work their rights out the same
// way from the lists they hold.
func GrantedRights(names map[string]bool, lists ...[]Grant) []string {
	allow, deny := map[string]bool{}, map[string]bool{}
	for _, l := range lists {
		for _, g := range l {
			if !names[g.Subject] {
				continue
			}
			for _, r := range g.Rights {
				if g.Deny {
					deny[r] = true
				} else {
					allow[r] = true
				}
			}
		}
	}
	out := []string{}
	for _, r := range RightOrder {
		if allow[r] && !deny[r] {
			out = append(out, r)
		}
	}
	return out
}

// SubjectNames are the subjects that name user in permission lists: the
// user and its groups as they are now, as the next signed policy has them.
func (s *Store) SubjectNames(user string) (map[string]bool, error) {
	var names map[string]bool
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		names, err = subjectNamesTx(tx, user)
		return err
	})
	return names, err
}

func subjectNamesTx(tx *bolt.Tx, user string) (map[string]bool, error) {
	groups, err := list[Group](tx, bGroups, nil)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{"user:" + user: true}
	for _, g := range groups {
		if slices.Contains(g.Members, user) {
			names["group:"+g.Name] = true
		}
	}
	return names, nil
}

// RightsIn is what user may do by office's list and, unless host is
// empty, the host's own list (host is a member id), as they are now: the
// groups and the lists read in one transaction.
func (s *Store) RightsIn(user, office, host string) ([]string, error) {
	var rights []string
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		rights, err = rightsInTx(tx, user, office, host)
		return err
	})
	return rights, err
}

func rightsInTx(tx *bolt.Tx, user, office, host string) ([]string, error) {
	if user == "" {
		return nil, nil
	}
	names, err := subjectNamesTx(tx, user)
	if err != nil {
		return nil, err
	}
	grants, err := permissionsIn(tx, OfficeScope(office))
	if err != nil {
		return nil, err
	}
	lists := [][]Grant{grants}
	if host != "" {
		own, err := permissionsIn(tx, HostScope(host))
		if err != nil {
			return nil, err
		}
		lists = append(lists, own)
	}
	return GrantedRights(names, lists...), nil
}

// FindHostFor resolves a host as FindHost does, among the hosts where
// user has some right (by the list of the office each is in now and its
// own): a technician learns nothing of other hosts, not even whether one
// is called that, and a hostname that other hosts share too names the one
// the technician may reach. The host still decides by the lists it holds.
func (s *Store) FindHostFor(user, host string) (*Member, error) {
	return s.findHost(host, "host you may reach", "hosts you may reach", func(m Member) (bool, error) {
		rights, err := s.RightsIn(user, m.Office, m.ID)
		return len(rights) > 0, err
	})
}
