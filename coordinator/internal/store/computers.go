package store

import (
	"fmt"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bComputers holds computers added to an office by hostname before they
// enrol, keyed by the lower-case hostname. The bucket is made on first
// write, so stores from before it need no migration.
var bComputers = []byte("computers")

// Computer is a hostname an admin put in an office before it enrolled.
type Computer struct {
	Hostname string    `json:"hostname"`
	Office   string    `json:"office"`
	Added    time.Time `json:"added"`
	// Member is the id of the last member that enrolled under this
	// hostname; empty until one did.
	Member   string    `json:"member"`
	Enrolled time.Time `json:"enrolled"`
}

func computerKey(hostname string) []byte { return []byte(strings.ToLower(hostname)) }

// AddComputers puts hostnames in an existing office. A hostname is in one
// office at most: one already in another office is refused (ErrConflict,
// naming it); one already in this office is kept as it is.
func (s *Store) AddComputers(office string, hostnames []string, now time.Time) ([]Computer, error) {
	var out []Computer
	err := s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bOffices).Get([]byte(office)) == nil {
			return fmt.Errorf("office %s: %w", office, ErrNotFound)
		}
		if _, err := tx.CreateBucketIfNotExists(bComputers); err != nil {
			return err
		}
		for _, h := range hostnames {
			c, err := get[Computer](tx, bComputers, string(computerKey(h)))
			switch {
			case err == nil && c.Office != office:
				return fmt.Errorf("computer %s is already in office %s: remove it there first (outpost office rm-computer %s %s): %w", h, c.Office, c.Office, h, ErrConflict)
			case err == nil:
				out = append(out, *c)
				continue
			case err != ErrNotFound:
				return err
			}
			c = &Computer{Hostname: h, Office: office, Added: now}
			if err := put(tx, bComputers, string(computerKey(h)), c); err != nil {
				return err
			}
			out = append(out, *c)
		}
		return nil
	})
	return out, err
}

// Computers lists the computers added to an office by name, by hostname.
func (s *Store) Computers(office string) ([]Computer, error) {
	out := []Computer{}
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bOffices).Get([]byte(office)) == nil {
			return fmt.Errorf("office %s: %w", office, ErrNotFound)
		}
		if tx.Bucket(bComputers) == nil {
			return nil
		}
		cs, err := list[Computer](tx, bComputers, func(c *Computer) bool { return c.Office == office })
		out = append(out, cs...)
		return err
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Hostname < out[j].Hostname })
	return out, err
}

// RemoveComputer takes a hostname out of an office's list; the member that
// enrolled with it, if any, stays where it is.
func (s *Store) RemoveComputer(office, hostname string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bComputers) == nil {
			return fmt.Errorf("computer %s in office %s: %w", hostname, office, ErrNotFound)
		}
		c, err := get[Computer](tx, bComputers, string(computerKey(hostname)))
		if err != nil || c.Office != office {
			return fmt.Errorf("computer %s in office %s: %w", hostname, office, ErrNotFound)
		}
		return tx.Bucket(bComputers).Delete(computerKey(hostname))
	})
}

// preregistered finds the computer entry for an enrolling hostname: the
// exact name in any case, else its first label ("pc-7" for
// "pc-7.corp.example").
func preregistered(tx *bolt.Tx, hostname string) (*Computer, error) {
	if tx.Bucket(bComputers) == nil {
		return nil, nil
	}
	keys := []string{hostname}
	if short, _, ok := strings.Cut(hostname, "."); ok && short != "" {
		keys = append(keys, short)
	}
	for _, k := range keys {
		c, err := get[Computer](tx, bComputers, string(computerKey(k)))
		if err == nil {
			return c, nil
		}
		if err != ErrNotFound {
			return nil, err
		}
	}
	return nil, nil
}

// steerPreregistered is the enrollment hook: an enrolling agent whose
// hostname an admin put in an office goes there (home and current office),
// whatever office its token is for. It returns that office, or nil when the
// hostname is not listed. Relays are not steered: they serve the office
// their token names.
func steerPreregistered(tx *bolt.Tx, m *Member, now time.Time) (*Office, error) {
	if m.Role != "agent" {
		return nil, nil
	}
	c, err := preregistered(tx, m.Hostname)
	if err != nil || c == nil {
		return nil, err
	}
	o, err := get[Office](tx, bOffices, c.Office)
	if err != nil {
		return nil, fmt.Errorf("office %s of pre-registered computer %s: %w", c.Office, c.Hostname, err)
	}
	m.Home, m.Office = o.Name, o.Name
	c.Member, c.Enrolled = m.ID, now
	if err := put(tx, bComputers, string(computerKey(c.Hostname)), c); err != nil {
		return nil, err
	}
	return o, nil
}

// removeOfficeComputers moves an office's pre-registered computers to
// moveTo, or drops them when moveTo is empty; the office is being removed.
func removeOfficeComputers(tx *bolt.Tx, office, moveTo string) error {
	if tx.Bucket(bComputers) == nil {
		return nil
	}
	cs, err := list[Computer](tx, bComputers, func(c *Computer) bool { return c.Office == office })
	if err != nil {
		return err
	}
	for _, c := range cs {
		if moveTo == "" {
			if err := tx.Bucket(bComputers).Delete(computerKey(c.Hostname)); err != nil {
				return err
			}
			continue
		}
		c.Office = moveTo
		if err := put(tx, bComputers, string(computerKey(c.Hostname)), c); err != nil {
			return err
		}
	}
	return nil
}
