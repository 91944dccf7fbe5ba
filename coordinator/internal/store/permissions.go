package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// PermissionsTag is the entity tag of a permission list: a digest of its
// grants, so that it changes whenever the list does. An empty list has a
// tag too. Whoever changes a list by reading it, editing it and writing
// it back sends the tag it read (SetPermissionsIf) and so cannot undo a
// change another admin made in between.
func PermissionsTag(grants []Grant) string {
	if grants == nil {
		grants = []Grant{}
	}
	b, err := json.Marshal(grants)
	if err != nil {
		// A Grant is strings and a bool: it always encodes.
		panic(fmt.Sprintf("encode grants: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// PermissionsChangedError is the answer of SetPermissionsIf when the list
// is no longer the one the caller read. It is an ErrConflict.
type PermissionsChangedError struct {
	Scope   string
	Current string // the list's tag now
}

func (e *PermissionsChangedError) Error() string {
	return fmt.Sprintf("permission list %s changed since it was read (its tag is %s now)", e.Scope, e.Current)
}

func (e *PermissionsChangedError) Unwrap() error { return ErrConflict }

// SetPermissionsIf replaces the permission list of scope, provided its tag
// (PermissionsTag) is one of ifTags; no ifTags replaces it whatever it is.
// The check and the write are one transaction. It returns the new tag.
func (s *Store) SetPermissionsIf(scope string, grants []Grant, ifTags []string) (string, error) {
	return s.SetPermissionsAs(scope, grants, ifTags, nil)
}

// Manager is who changes a permission list by the manage right rather
// than by an API role: that user must have manage by the list of Office
// and, unless Host (a member id) is empty, the host's own list.
type Manager struct{ User, Office, Host string }

// ErrNotManager is the answer of SetPermissionsAs when the manager no
// longer has the manage right.
var ErrNotManager = errors.New("not a manager of this list")

// SetPermissionsAs is SetPermissionsIf by a manager (by nil: by an API
// role): the manage right is checked in the write's own transaction, so a
// right taken away at the same instant cannot let one more write through.
func (s *Store) SetPermissionsAs(scope string, grants []Grant, ifTags []string, by *Manager) (string, error) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if by != nil {
			rights, err := rightsInTx(tx, by.User, by.Office, by.Host)
			if err != nil {
				return err
			}
			if !slices.Contains(rights, "manage") {
				return ErrNotManager
			}
		}
		if len(ifTags) > 0 {
			cur, err := permissionsIn(tx, scope)
			if err != nil {
				return err
			}
			if tag := PermissionsTag(cur); !slices.Contains(ifTags, tag) {
				return &PermissionsChangedError{Scope: scope, Current: tag}
			}
		}
		return putPermissions(tx, scope, grants)
	})
	if err != nil {
		return "", err
	}
	return PermissionsTag(grants), nil
}

func putPermissions(tx *bolt.Tx, scope string, grants []Grant) error {
	if len(grants) == 0 {
		return tx.Bucket(bPermissions).Delete([]byte(scope))
	}
	return put(tx, bPermissions, scope, grants)
}

func permissionsIn(tx *bolt.Tx, scope string) ([]Grant, error) {
	v := tx.Bucket(bPermissions).Get([]byte(scope))
	if v == nil {
		return nil, nil
	}
	var out []Grant
	if err := json.Unmarshal(v, &out); err != nil {
		return nil, fmt.Errorf("decode %s/%s: %w", bPermissions, scope, err)
	}
	return out, nil
}

// PermissionList is one stored permission list and where it applies.
type PermissionList struct {
	Scope string // "office/<name>" or "host/<member id>"
	// Office is the office whose signed policy carries the list: the
	// office itself, or the office the host is in now; "" for the list
	// of a host removed before removing a member removed its list too.
	Office   string
	Host     string // member id, for a host's list
	Hostname string // the host's name, when it is still a member
	Grants   []Grant
}

// Label names the list for people: "office hq", "host pc-7" (the member
// id when the host is gone or has no name).
func (l PermissionList) Label() string {
	if l.Host == "" {
		return "office " + l.Office
	}
	if l.Hostname != "" {
		return "host " + l.Hostname
	}
	return "host " + l.Host
}

// PermissionLists returns every stored permission list: the offices' by
// name, then the hosts' by office, hostname and id.
func (s *Store) PermissionLists() ([]PermissionList, error) {
	var out []PermissionList
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		out, err = permissionLists(tx)
		return err
	})
	return out, err
}

func permissionLists(tx *bolt.Tx) ([]PermissionList, error) {
	var out []PermissionList
	err := tx.Bucket(bPermissions).ForEach(func(k, v []byte) error {
		l := PermissionList{Scope: string(k)}
		if err := json.Unmarshal(v, &l.Grants); err != nil {
			return fmt.Errorf("decode %s/%s: %w", bPermissions, k, err)
		}
		if id, ok := strings.CutPrefix(l.Scope, "host/"); ok {
			l.Host = id
			m, err := get[Member](tx, bMembers, id)
			switch {
			case err == nil:
				l.Office, l.Hostname = m.Office, m.Hostname
			case !errors.Is(err, ErrNotFound):
				return err
			}
		} else {
			l.Office = strings.TrimPrefix(l.Scope, "office/")
		}
		out = append(out, l)
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.Host == "") != (b.Host == "") {
			return a.Host == ""
		}
		if a.Office != b.Office {
			return a.Office < b.Office
		}
		if a.Hostname != b.Hostname {
			return a.Hostname < b.Hostname
		}
		return a.Host < b.Host
	})
	return out, err
}

// removeSubject takes every grant to subject ("user:NAME" or
// "group:NAME"), allow and deny, out of every permission list, within tx.
// It returns the lists that lost grants, each with the grants it lost.
func removeSubject(tx *bolt.Tx, subject string) ([]PermissionList, error) {
	lists, err := permissionLists(tx)
	if err != nil {
		return nil, err
	}
	var out []PermissionList
	for _, l := range lists {
		var kept, removed []Grant
		for _, g := range l.Grants {
			if g.Subject == subject {
				removed = append(removed, g)
			} else {
				kept = append(kept, g)
			}
		}
		if len(removed) == 0 {
			continue
		}
		if err := putPermissions(tx, l.Scope, kept); err != nil {
			return nil, err
		}
		l.Grants = removed
		out = append(out, l)
	}
	return out, nil
}
