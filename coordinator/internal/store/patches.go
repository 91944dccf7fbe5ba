package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Buckets of the patch catalog and of compliance history. They are created
// on first write, so that a store from before them opens unchanged.
var (
	bPatches   = []byte("patches")
	bApprovals = []byte("patch_approvals") // office \x00 patch id → PatchApproval
	bRules     = []byte("patch_rules")
	bClean     = []byte("patch_clean") // office \x00 patch id → time every host first had it
	// bRuns is the runs of stores from before bRunList: member id →
	// []Report, newest last (runs.go).
	bRuns = []byte("run_history")
)

// Patch is an entry of the patch catalog.
type Patch struct {
	ID              string    `json:"id"`
	Title           string    `json:"title"`
	Severity        string    `json:"severity"` // low, medium, high, critical
	Package         string    `json:"package"`
	FixedVersion    string    `json:"fixed_version"`
	Artifact        string    `json:"artifact"` // sha256 of the fixed package
	RebootRequired  bool      `json:"reboot_required"`
	RollbackAllowed bool      `json:"rollback_allowed"`
	Supersedes      []string  `json:"supersedes,omitempty"`
	Released        time.Time `json:"released,omitempty"`
	Imported        time.Time `json:"imported"`
}

// PatchApproval lets a patch be installed in an office.
type PatchApproval struct {
	Patch  string    `json:"patch"`
	Office string    `json:"office"`
	By     string    `json:"by"` // "admin" or "rule <name>"
	Window string    `json:"window,omitempty"`
	Reboot string    `json:"reboot,omitempty"`
	At     time.Time `json:"at"`
}

// ApprovalRule approves patches of at least MinSeverity in TestOffice at
// once, and in Offices (every other office when empty) once every host of
// TestOffice has had the patch installed for AfterDays.
type ApprovalRule struct {
	Name        string    `json:"name"`
	MinSeverity string    `json:"min_severity"`
	TestOffice  string    `json:"test_office"`
	AfterDays   int       `json:"after_days"`
	Offices     []string  `json:"offices,omitempty"`
	Window      string    `json:"window,omitempty"`
	Reboot      string    `json:"reboot,omitempty"`
	Created     time.Time `json:"created"`
}

func approvalKey(office, patch string) string { return office + "\x00" + patch }

// ImportPatches adds or replaces catalog entries in one transaction.
// check sees the whole catalog as it would be after the import and may
// refuse it, in which case nothing is written.
func (s *Store) ImportPatches(ps []Patch, check func(all map[string]Patch) error) (added, updated int, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bPatches)
		if err != nil {
			return err
		}
		all := map[string]Patch{}
		if err := b.ForEach(func(k, v []byte) error {
			var p Patch
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("decode patch %s: %w", k, err)
			}
			all[p.ID] = p
			return nil
		}); err != nil {
			return err
		}
		for _, p := range ps {
			if _, ok := all[p.ID]; ok {
				updated++
			} else {
				added++
			}
			all[p.ID] = p
		}
		if err := check(all); err != nil {
			return err
		}
		for _, p := range ps {
			if err := put(tx, bPatches, p.ID, p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return added, updated, nil
}

func listIn[T any](s *Store, bucket []byte, keep func(*T) bool) ([]T, error) {
	var out []T
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		if tx.Bucket(bucket) == nil {
			return nil
		}
		out, err = list(tx, bucket, keep)
		return err
	})
	return out, err
}

// Patches lists the catalog by id.
func (s *Store) Patches() ([]Patch, error) {
	out, err := listIn[Patch](s, bPatches, nil)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// Patch returns one catalog entry.
func (s *Store) Patch(id string) (*Patch, error) {
	var out *Patch
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		if tx.Bucket(bPatches) == nil {
			return fmt.Errorf("patch %s: %w", id, ErrNotFound)
		}
		out, err = get[Patch](tx, bPatches, id)
		if err != nil {
			return fmt.Errorf("patch %s: %w", id, err)
		}
		return nil
	})
	return out, err
}

// Approve records an approval; an existing one for the office and patch is
// kept (the first approval's time counts), and added reports which.
func (s *Store) Approve(a PatchApproval) (added bool, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bOffices).Get([]byte(a.Office)) == nil {
			return fmt.Errorf("office %s: %w", a.Office, ErrNotFound)
		}
		if tx.Bucket(bPatches) == nil || tx.Bucket(bPatches).Get([]byte(a.Patch)) == nil {
			return fmt.Errorf("patch %s: %w", a.Patch, ErrNotFound)
		}
		b, err := tx.CreateBucketIfNotExists(bApprovals)
		if err != nil {
			return err
		}
		if b.Get([]byte(approvalKey(a.Office, a.Patch))) != nil {
			return nil
		}
		added = true
		return put(tx, bApprovals, approvalKey(a.Office, a.Patch), a)
	})
	return added, err
}

// Revoke removes an approval.
func (s *Store) Revoke(office, patch string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bApprovals)
		if b == nil || b.Get([]byte(approvalKey(office, patch))) == nil {
			return fmt.Errorf("approval of %s for office %s: %w", patch, office, ErrNotFound)
		}
		return b.Delete([]byte(approvalKey(office, patch)))
	})
}

// DeletePatch takes a patch out of the catalog with what is kept about it
// per office (since when its hosts have had it). An approval of it refuses
// the removal (ErrConflict) unless revoke is set, in which case the
// approvals go in the same transaction; revoked names their offices.
// Patches that superseded it supersede what it superseded in its place:
// superseding is followed through the catalog, and a chain cut in the
// middle would bring the older patches back beside the newer.
func (s *Store) DeletePatch(id string, revoke bool) (p *Patch, revoked []string, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bPatches) == nil {
			return fmt.Errorf("patch %s: %w", id, ErrNotFound)
		}
		if p, err = get[Patch](tx, bPatches, id); err != nil {
			return fmt.Errorf("patch %s: %w", id, err)
		}
		for _, bucket := range [][]byte{bApprovals, bClean} {
			b := tx.Bucket(bucket)
			if b == nil {
				continue
			}
			var keys [][]byte
			if err := b.ForEach(func(k, _ []byte) error {
				if office, patch, ok := strings.Cut(string(k), "\x00"); ok && patch == id {
					keys = append(keys, k)
					if bytes.Equal(bucket, bApprovals) {
						revoked = append(revoked, office)
					}
				}
				return nil
			}); err != nil {
				return err
			}
			if bytes.Equal(bucket, bApprovals) && len(revoked) > 0 && !revoke {
				return fmt.Errorf("patch %s is approved for office %s: %w", id, strings.Join(revoked, ", "), ErrConflict)
			}
			for _, k := range keys {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
		}
		b := tx.Bucket(bPatches)
		var spliced []Patch
		if err := b.ForEach(func(k, v []byte) error {
			if string(k) == id {
				return nil
			}
			var q Patch
			if err := json.Unmarshal(v, &q); err != nil {
				return fmt.Errorf("decode patch %s: %w", k, err)
			}
			if !slices.Contains(q.Supersedes, id) {
				return nil
			}
			var next []string
			for _, s := range append(slices.Clone(q.Supersedes), p.Supersedes...) {
				if s != id && s != q.ID && !slices.Contains(next, s) {
					next = append(next, s)
				}
			}
			q.Supersedes = next
			spliced = append(spliced, q)
			return nil
		}); err != nil {
			return err
		}
		for _, q := range spliced {
			if err := put(tx, bPatches, q.ID, q); err != nil {
				return err
			}
		}
		return b.Delete([]byte(id))
	})
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(revoked)
	return p, revoked, nil
}

// Approvals lists approvals, of one office when office is not empty.
func (s *Store) Approvals(office string) ([]PatchApproval, error) {
	out, err := listIn[PatchApproval](s, bApprovals, func(a *PatchApproval) bool { return office == "" || a.Office == office })
	sort.Slice(out, func(i, j int) bool {
		if out[i].Office != out[j].Office {
			return out[i].Office < out[j].Office
		}
		return out[i].Patch < out[j].Patch
	})
	return out, err
}

// PutRule adds or replaces an approval rule; a replaced rule keeps the
// time it was created. It returns the rule as stored, and whether it is new.
func (s *Store) PutRule(r ApprovalRule) (stored ApprovalRule, created bool, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bOffices).Get([]byte(r.TestOffice)) == nil {
			return fmt.Errorf("test office %s: %w", r.TestOffice, ErrNotFound)
		}
		for _, o := range r.Offices {
			if tx.Bucket(bOffices).Get([]byte(o)) == nil {
				return fmt.Errorf("office %s: %w", o, ErrNotFound)
			}
		}
		if _, err := tx.CreateBucketIfNotExists(bRules); err != nil {
			return err
		}
		old, err := get[ApprovalRule](tx, bRules, r.Name)
		switch {
		case err == nil:
			r.Created = old.Created
		case errors.Is(err, ErrNotFound):
			created = true
		default:
			return err
		}
		return put(tx, bRules, r.Name, r)
	})
	return r, created, err
}

// Rule returns one approval rule.
func (s *Store) Rule(name string) (*ApprovalRule, error) {
	var r *ApprovalRule
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bRules) == nil {
			return fmt.Errorf("rule %s: %w", name, ErrNotFound)
		}
		var err error
		if r, err = get[ApprovalRule](tx, bRules, name); errors.Is(err, ErrNotFound) {
			return fmt.Errorf("rule %s: %w", name, ErrNotFound)
		}
		return err
	})
	return r, err
}

// DeleteRule removes an approval rule.
func (s *Store) DeleteRule(name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bRules)
		if b == nil || b.Get([]byte(name)) == nil {
			return fmt.Errorf("rule %s: %w", name, ErrNotFound)
		}
		return b.Delete([]byte(name))
	})
}

// Rules lists the approval rules by name.
func (s *Store) Rules() ([]ApprovalRule, error) {
	out, err := listIn[ApprovalRule](s, bRules, nil)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// CleanSince returns since when every host of office has had patch
// installed, as last recorded; zero when not.
func (s *Store) CleanSince(office, patch string) (time.Time, error) {
	var t time.Time
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bClean)
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(approvalKey(office, patch))); v != nil {
			return json.Unmarshal(v, &t)
		}
		return nil
	})
	return t, err
}

// SetCleanSince records (or with a zero time, forgets) since when every
// host of office has had patch installed.
func (s *Store) SetCleanSince(office, patch string, since time.Time) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bClean)
		if err != nil {
			return err
		}
		if since.IsZero() {
			return b.Delete([]byte(approvalKey(office, patch)))
		}
		return put(tx, bClean, approvalKey(office, patch), since)
	})
}

// MaxRuns is how many runs per host the coordinator keeps.
const MaxRuns = 20

// AppendRun keeps r as the newest run of member id, dropping the oldest
// beyond MaxRuns. A report already kept (same revision and time) is not
// kept twice: agents send their last report at every check-in.
func (s *Store) AppendRun(id string, r Report) error {
	return s.db.Update(func(tx *bolt.Tx) error { return appendRun(tx, id, r) })
}
