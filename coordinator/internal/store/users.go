package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Buckets of the authorization server: technicians and admins, their
// groups, refresh tokens, host permission lists and the audit trail.
var (
	bUsers       = []byte("users")
	bGroups      = []byte("groups")
	bRefresh     = []byte("refresh_tokens")
	bPermissions = []byte("permissions") // "host/<member id>" or "office/<name>" → []Grant
	bAudit       = []byte("audit")       // big-endian sequence → AuditEvent
	bAuditIDs    = []byte("audit_ids")   // source "/" id → its sequence in bAudit
	// bAuditArrivals marks, for each UTC day ("2006-01-02") events reached
	// the coordinator on, the sequence of the first of them: events are
	// pruned by when they arrived, which a host's clock does not decide.
	bAuditArrivals = []byte("audit_arrivals")
)

var authBuckets = [][]byte{bUsers, bGroups, bRefresh, bPermissions, bAudit, bAuditIDs}

// InitAuth creates the authorization buckets; the coordinator calls it at
// start, before anything else touches users.
func (s *Store) InitAuth() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range authBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		if tx.Bucket(bAuditArrivals) != nil {
			return nil
		}
		arrivals, err := tx.CreateBucket(bAuditArrivals)
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", bAuditArrivals, err)
		}
		// A store from before arrivals were marked: its events count as
		// arrived now, and are kept a whole retention period from here.
		if k, _ := tx.Bucket(bAudit).Cursor().First(); k != nil {
			return arrivals.Put(arrivalDay(time.Now()), k)
		}
		return nil
	})
}

func arrivalDay(t time.Time) []byte { return []byte(t.UTC().Format(time.DateOnly)) }

// ErrReplayed is returned when a refresh token is presented a second time.
var ErrReplayed = errors.New("refresh token was already used")

// User is a person who signs in: an admin, an operator or a technician.
type User struct {
	Name         string `json:"name"`
	PasswordHash string `json:"password_hash,omitempty"`
	// Role is the admin API role: admin, operator, read-only, or empty for
	// a technician who only connects to hosts.
	Role     string `json:"role"`
	Disabled bool   `json:"disabled"`
	// ForceServerSecurity forbids host-local break-glass sign-in.
	ForceServerSecurity bool `json:"force_server_security"`
	// NotBefore refuses tokens issued earlier; raised when the user is
	// disabled or leaves a group, so that hosts drop what the old token allowed.
	NotBefore    time.Time `json:"not_before"`
	FailedLogins int       `json:"failed_logins"`
	LockedUntil  time.Time `json:"locked_until"`
	Created      time.Time `json:"created"`
}

// Group is a named set of users that permissions can name.
type Group struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Members     []string  `json:"members"`
	Created     time.Time `json:"created"`
}

// RefreshToken is a long-lived token that buys new access tokens once.
// Only the SHA-256 of its secret is kept. All tokens descending from one
// sign-in share a family; presenting a used one revokes the family.
type RefreshToken struct {
	Hash    string    `json:"hash"`
	User    string    `json:"user"`
	Family  string    `json:"family"`
	Expires time.Time `json:"expires"`
	Used    bool      `json:"used"`
	Revoked bool      `json:"revoked"`
	Created time.Time `json:"created"`
}

// Grant gives (or with Deny, takes away) rights on hosts from a subject,
// "user:NAME" or "group:NAME".
type Grant struct {
	Subject string   `json:"subject"`
	Rights  []string `json:"rights"`
	Deny    bool     `json:"deny,omitempty"`
}

// AuditEvent is one recorded sign-in, admin change, connect or command.
type AuditEvent struct {
	Seq     uint64    `json:"seq"`
	At      time.Time `json:"at"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Target  string    `json:"target,omitempty"`
	Detail  string    `json:"detail,omitempty"`
	Allowed bool      `json:"allowed"`
	Source  string    `json:"source"` // "coordinator" or the member id of the host
	Remote  string    `json:"remote,omitempty"`
	ID      string    `json:"id,omitempty"` // the host's record id, so a resent batch is stored once
}

// CreateUser adds a user; ErrExists if the name is taken.
func (s *Store) CreateUser(u User) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bUsers).Get([]byte(u.Name)) != nil {
			return fmt.Errorf("user %s: %w", u.Name, ErrExists)
		}
		return put(tx, bUsers, u.Name, u)
	})
}

// UpdateUser changes a user in place with fn.
func (s *Store) UpdateUser(name string, fn func(*User) error) (*User, error) {
	var out *User
	err := s.db.Update(func(tx *bolt.Tx) error {
		u, err := get[User](tx, bUsers, name)
		if err != nil {
			return fmt.Errorf("user %s: %w", name, err)
		}
		if err := fn(u); err != nil {
			return err
		}
		u.Name = name
		out = u
		return put(tx, bUsers, name, u)
	})
	return out, err
}

// User returns one user.
func (s *Store) User(name string) (*User, error) {
	var out *User
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		out, err = get[User](tx, bUsers, name)
		if err != nil {
			return fmt.Errorf("user %s: %w", name, err)
		}
		return nil
	})
	return out, err
}

// Users lists every user, by name.
func (s *Store) Users() ([]User, error) {
	var out []User
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		out, err = list[User](tx, bUsers, nil)
		return err
	})
	return out, err
}

// DeleteUser removes a user, its group memberships, refresh tokens and
// grants (RemoveUser).
func (s *Store) DeleteUser(name string) error {
	_, err := s.RemoveUser(name)
	return err
}

// RemoveUser removes a user, its group memberships and refresh tokens, and
// every grant to it (user:NAME) from every office's and host's permission
// list, in one transaction: a user made later under the same name starts
// with no rights. It returns the lists that lost grants, whose offices'
// policies need signing anew.
func (s *Store) RemoveUser(name string) ([]PermissionList, error) {
	var lost []PermissionList
	err := s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bUsers).Get([]byte(name)) == nil {
			return fmt.Errorf("user %s: %w", name, ErrNotFound)
		}
		groups, err := list[Group](tx, bGroups, nil)
		if err != nil {
			return err
		}
		for _, g := range groups {
			if i := indexOf(g.Members, name); i >= 0 {
				g.Members = append(g.Members[:i], g.Members[i+1:]...)
				if err := put(tx, bGroups, g.Name, g); err != nil {
					return err
				}
			}
		}
		if err := deleteRefreshOf(tx, name); err != nil {
			return err
		}
		if lost, err = removeSubject(tx, "user:"+name); err != nil {
			return err
		}
		return del(tx, bUsers, name)
	})
	if err != nil {
		return nil, err
	}
	return lost, nil
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// CreateGroup adds a group whose members must all exist.
func (s *Store) CreateGroup(g Group) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bGroups).Get([]byte(g.Name)) != nil {
			return fmt.Errorf("group %s: %w", g.Name, ErrExists)
		}
		for _, m := range g.Members {
			if tx.Bucket(bUsers).Get([]byte(m)) == nil {
				return fmt.Errorf("member %s of group %s: user %w", m, g.Name, ErrNotFound)
			}
		}
		return put(tx, bGroups, g.Name, g)
	})
}

// UpdateGroup changes a group with fn. Members fn removes get their
// NotBefore raised to now, in the same transaction, so no token that
// carried the group stays valid.
func (s *Store) UpdateGroup(name string, now time.Time, fn func(*Group) error) (*Group, []string, error) {
	var out *Group
	var removed []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		g, err := get[Group](tx, bGroups, name)
		if err != nil {
			return fmt.Errorf("group %s: %w", name, err)
		}
		before := append([]string(nil), g.Members...)
		if err := fn(g); err != nil {
			return err
		}
		g.Name = name
		g.Members = dedupe(g.Members)
		for _, m := range g.Members {
			if tx.Bucket(bUsers).Get([]byte(m)) == nil {
				return fmt.Errorf("member %s of group %s: user %w", m, name, ErrNotFound)
			}
		}
		for _, m := range before {
			if indexOf(g.Members, m) < 0 {
				removed = append(removed, m)
				if err := raiseNotBefore(tx, m, now); err != nil {
					return err
				}
			}
		}
		out = g
		return put(tx, bGroups, name, g)
	})
	return out, removed, err
}

func dedupe(xs []string) []string {
	out := []string{}
	for _, x := range xs {
		if indexOf(out, x) < 0 {
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}

func raiseNotBefore(tx *bolt.Tx, user string, now time.Time) error {
	u, err := get[User](tx, bUsers, user)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if now.After(u.NotBefore) {
		u.NotBefore = now
	}
	return put(tx, bUsers, user, u)
}

// Group returns one group.
func (s *Store) Group(name string) (*Group, error) {
	var out *Group
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		out, err = get[Group](tx, bGroups, name)
		if err != nil {
			return fmt.Errorf("group %s: %w", name, err)
		}
		return nil
	})
	return out, err
}

// Groups lists every group, by name.
func (s *Store) Groups() ([]Group, error) {
	var out []Group
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		out, err = list[Group](tx, bGroups, nil)
		return err
	})
	return out, err
}

// GroupsOf lists the names of the groups user is a member of.
func (s *Store) GroupsOf(user string) ([]string, error) {
	groups, err := s.Groups()
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, g := range groups {
		if indexOf(g.Members, user) >= 0 {
			out = append(out, g.Name)
		}
	}
	return out, nil
}

// DeleteGroup removes a group and its grants (RemoveGroup).
func (s *Store) DeleteGroup(name string, now time.Time) error {
	_, err := s.RemoveGroup(name, now)
	return err
}

// RemoveGroup removes a group; its members' NotBefore is raised to now,
// and every grant to it (group:NAME) leaves every office's and host's
// permission list, in the same transaction: a group made later under the
// same name starts with no rights. It returns the lists that lost grants,
// whose offices' policies need signing anew.
func (s *Store) RemoveGroup(name string, now time.Time) ([]PermissionList, error) {
	var lost []PermissionList
	err := s.db.Update(func(tx *bolt.Tx) error {
		g, err := get[Group](tx, bGroups, name)
		if err != nil {
			return fmt.Errorf("group %s: %w", name, err)
		}
		for _, m := range g.Members {
			if err := raiseNotBefore(tx, m, now); err != nil {
				return err
			}
		}
		if lost, err = removeSubject(tx, "group:"+name); err != nil {
			return err
		}
		return tx.Bucket(bGroups).Delete([]byte(name))
	})
	if err != nil {
		return nil, err
	}
	return lost, nil
}

// PutRefresh stores a new refresh token.
func (s *Store) PutRefresh(r RefreshToken) error {
	return s.db.Update(func(tx *bolt.Tx) error { return put(tx, bRefresh, r.Hash, r) })
}

// UseRefresh marks the refresh token with this hash used and returns it.
// A token presented twice is a replay: its whole family is revoked and
// ErrReplayed returned.
func (s *Store) UseRefresh(hash string, now time.Time) (*RefreshToken, error) {
	var out *RefreshToken
	var replayed bool
	err := s.db.Update(func(tx *bolt.Tx) error {
		r, err := get[RefreshToken](tx, bRefresh, hash)
		if err != nil {
			return fmt.Errorf("refresh token: %w", err)
		}
		out = r
		if r.Used || r.Revoked {
			replayed = r.Used
			fam, err := list[RefreshToken](tx, bRefresh, func(x *RefreshToken) bool { return x.Family == r.Family })
			if err != nil {
				return err
			}
			for _, x := range fam {
				x.Revoked = true
				if err := put(tx, bRefresh, x.Hash, x); err != nil {
					return err
				}
			}
			return nil
		}
		r.Used = true
		return put(tx, bRefresh, hash, r)
	})
	if err != nil {
		return nil, err
	}
	if replayed || out.Revoked {
		return out, ErrReplayed
	}
	return out, nil
}

// EndRefreshFamily deletes the refresh token with this hash and every
// other of its sign-in (its family), and returns its user: outpost logout.
// A token not stored is ErrNotFound.
func (s *Store) EndRefreshFamily(hash string) (string, error) {
	// Looked up first without the write lock: made-up tokens (the route
	// takes no other credential) cost no write transaction.
	if err := s.db.View(func(tx *bolt.Tx) error {
		_, err := get[RefreshToken](tx, bRefresh, hash)
		return err
	}); err != nil {
		return "", fmt.Errorf("refresh token: %w", err)
	}
	var user string
	err := s.db.Update(func(tx *bolt.Tx) error {
		r, err := get[RefreshToken](tx, bRefresh, hash)
		if err != nil {
			return fmt.Errorf("refresh token: %w", err)
		}
		user = r.User
		fam, err := list[RefreshToken](tx, bRefresh, func(x *RefreshToken) bool { return x.Family == r.Family })
		if err != nil {
			return err
		}
		for _, x := range fam {
			if err := tx.Bucket(bRefresh).Delete([]byte(x.Hash)); err != nil {
				return err
			}
		}
		return nil
	})
	return user, err
}

func deleteRefreshOf(tx *bolt.Tx, user string) error {
	rs, err := list[RefreshToken](tx, bRefresh, func(r *RefreshToken) bool { return r.User == user })
	if err != nil {
		return err
	}
	for _, r := range rs {
		if err := tx.Bucket(bRefresh).Delete([]byte(r.Hash)); err != nil {
			return err
		}
	}
	return nil
}

// PruneRefresh deletes refresh tokens that expired before now.
func (s *Store) PruneRefresh(now time.Time) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		rs, err := list[RefreshToken](tx, bRefresh, func(r *RefreshToken) bool { return now.After(r.Expires) })
		if err != nil {
			return err
		}
		for _, r := range rs {
			if err := tx.Bucket(bRefresh).Delete([]byte(r.Hash)); err != nil {
				return err
			}
		}
		return nil
	})
}

// PermissionScope names a permission list: one host, or every host of an office.
func HostScope(member string) string   { return "host/" + member }
func OfficeScope(office string) string { return "office/" + office }

// SetPermissions replaces the permission list of a scope, whatever it is
// (SetPermissionsIf changes it only if it is still the list read).
func (s *Store) SetPermissions(scope string, grants []Grant) error {
	_, err := s.SetPermissionsIf(scope, grants, nil)
	return err
}

// Permissions returns the permission list of a scope (empty when unset).
func (s *Store) Permissions(scope string) ([]Grant, error) {
	var out []Grant
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		out, err = permissionsIn(tx, scope)
		return err
	})
	return out, err
}

// AppendAudit records events, skipping those whose (Source, ID) is already
// stored so that a host resending an unacknowledged batch records once,
// however late (a host that lost power before it forgot what was
// acknowledged sends it again when it is back, days later maybe): stored
// ids are indexed.
func (s *Store) AppendAudit(events ...AuditEvent) error {
	return s.appendAudit(time.Now(), events...)
}

// appendAudit is AppendAudit of events arriving at now.
func (s *Store) appendAudit(now time.Time, events ...AuditEvent) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bAudit)
		ids, err := tx.CreateBucketIfNotExists(bAuditIDs)
		if err != nil {
			return err
		}
		arrivals, err := tx.CreateBucketIfNotExists(bAuditArrivals)
		if err != nil {
			return err
		}
		day := arrivalDay(now)
		for _, ev := range events {
			var idKey []byte
			if ev.ID != "" {
				idKey = []byte(ev.Source + "/" + ev.ID)
				if ids.Get(idKey) != nil {
					continue
				}
			}
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			ev.Seq = seq
			var k [8]byte
			binary.BigEndian.PutUint64(k[:], seq)
			v, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			if err := b.Put(k[:], v); err != nil {
				return err
			}
			if arrivals.Get(day) == nil {
				if err := arrivals.Put(day, k[:]); err != nil {
					return err
				}
			}
			if idKey != nil {
				if err := ids.Put(idKey, k[:]); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// pruneAuditBatch bounds the events one pruning transaction deletes: the
// first pruning of a large store must not hold the write lock, that every
// check-in waits for, for long.
const pruneAuditBatch = 10000

// PruneAudit deletes the audit events that reached the coordinator on a
// (UTC) day that ended before before, with their entries in the index of
// host record ids, and says how many went. The time an event carries
// (a host's clock) does not count: a spool sent after an outage is kept
// as long as any event. An event is thus kept from its arrival until
// before passes it, and at most a day more.
func (s *Store) PruneAudit(before time.Time) (int, error) {
	cut := arrivalDay(before)
	pruned := 0
	for {
		n, done, err := s.pruneAuditBatch(cut)
		pruned += n
		if err != nil || done {
			return pruned, err
		}
	}
}

// pruneAuditBatch deletes up to pruneAuditBatch events that arrived
// before the day cut; done once none is left.
func (s *Store) pruneAuditBatch(cut []byte) (n int, done bool, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		arrivals := tx.Bucket(bAuditArrivals)
		if arrivals == nil {
			done = true
			return nil // InitAuth has not run: nothing was marked
		}
		// The first event to keep is the first that arrived on cut's day
		// or later (the least of their marks: a clock set back marks a
		// day again, later); when none did, every event goes.
		b, ids := tx.Bucket(bAudit), tx.Bucket(bAuditIDs)
		keep := b.Sequence() + 1
		ac := arrivals.Cursor()
		for k, v := ac.Seek(cut); k != nil; k, v = ac.Next() {
			if len(v) == 8 {
				keep = min(keep, binary.BigEndian.Uint64(v))
			}
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil && binary.BigEndian.Uint64(k) < keep; k, v = c.First() {
			if n == pruneAuditBatch {
				return nil
			}
			var e AuditEvent
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode audit %x: %w", k, err)
			}
			if e.ID != "" && ids != nil {
				idKey := []byte(e.Source + "/" + e.ID)
				// A resent record of the same id stored later keeps its own.
				if seq := ids.Get(idKey); bytes.Equal(seq, k) {
					if err := ids.Delete(idKey); err != nil {
						return err
					}
				}
			}
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
		done = true
		for k, _ := ac.First(); k != nil && bytes.Compare(k, cut) < 0; k, _ = ac.First() {
			if err := ac.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	return n, done, err
}

// AuditFilter selects audit events; zero fields match everything.
type AuditFilter struct {
	Actor string
	// Action matches itself and its kinds: exec takes exec.end, user
	// every user.*.
	Action string
	// Source is a host's member id: what the host recorded, and the
	// coordinator's events about it (its connects, moves, labels).
	Source string
	Since  time.Time
	Limit  int // newest first; 0 means 1000
}

// auditLateRun is how many events older than a filter's Since may stand
// in a row before newer ones: a host's spool, sent at once after an
// outage (quicsrv takes at most 10,000 a batch).
const auditLateRun = 10000

// Audit returns matching events, newest to arrive first.
func (s *Store) Audit(f AuditFilter) ([]AuditEvent, error) {
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	out := []AuditEvent{}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bAudit).Cursor()
		// Events are kept in the order they arrived, and a host sends
		// what it spooled while offline late, with its own times: an old
		// one may stand after newer ones. So an event before Since ends
		// the scan only after a host's whole spool of them in a row.
		older := 0
		for k, v := c.Last(); k != nil && len(out) < f.Limit; k, v = c.Prev() {
			var e AuditEvent
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode audit %x: %w", k, err)
			}
			if !f.Since.IsZero() && e.At.Before(f.Since) {
				if older++; older > auditLateRun {
					break
				}
				continue
			}
			older = 0
			if (f.Actor == "" || e.Actor == f.Actor) && (f.Action == "" || e.Action == f.Action || strings.HasPrefix(e.Action, f.Action+".")) && (f.Source == "" || e.Source == f.Source || e.Target == "host "+f.Source || e.Target == "agent "+f.Source) {
				out = append(out, e)
			}
		}
		return nil
	})
	return out, err
}
