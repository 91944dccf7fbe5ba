package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bReleases = []byte("releases") // office → Release (mode distribution)

// Release is the revision of a distribution office's policy that its
// agents have been told of: the newest its distribution server has staged
// whole. Newer revisions wait for the next report of staging.
type Release struct {
	Office   string `json:"office"`
	Revision uint64 `json:"revision"`
	Signed   []byte `json:"signed"` // the serialized wire.SignedPolicy of that revision
	// Variants are the members' own policies at that revision (member id →
	// signed bytes), kept because newer revisions replace them.
	Variants map[string][]byte `json:"variants,omitempty"`
	At       time.Time         `json:"at"`
}

// For is the released signed policy of member: its variant, or the office's.
func (r *Release) For(member string) []byte {
	if v, ok := r.Variants[member]; ok {
		return v
	}
	return r.Signed
}

// Staging is a relay's last report of pre-staging its office's policy.
type Staging struct {
	Revision    uint64    `json:"revision"`
	Artifacts   int       `json:"artifacts"`
	Staged      int       `json:"staged"`
	Bytes       int64     `json:"bytes"`
	StagedBytes int64     `json:"staged_bytes"`
	Error       string    `json:"error,omitempty"`
	At          time.Time `json:"at"`
}

// Complete says whether every artifact of the revision is staged.
func (s *Staging) Complete() bool {
	return s != nil && s.Staged == s.Artifacts && s.Error == ""
}

// Released is the office's release, or ErrNotFound before the first.
func (s *Store) Released(office string) (*Release, error) {
	var out *Release
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		b := tx.Bucket(bReleases)
		if b == nil {
			return ErrNotFound
		}
		out, err = get[Release](tx, bReleases, office)
		return err
	})
	return out, err
}

// Release records that the office's policy at its current revision may go
// to its agents, if that revision is rev and newer than the last release;
// it reports whether it released anything. Checking the revision inside
// the transaction keeps a policy applied in between from being released
// unstaged.
func (s *Store) Release(office string, rev uint64, now time.Time) (bool, error) {
	released := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bReleases); err != nil {
			return err
		}
		p, err := get[Policy](tx, bPolicies, office)
		if err != nil {
			return fmt.Errorf("release office %s: %w", office, err)
		}
		if p.Revision != rev {
			return nil
		}
		old, err := get[Release](tx, bReleases, office)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if old != nil && old.Revision >= rev {
			return nil
		}
		released = true
		rel := Release{Office: office, Revision: rev, Signed: p.Signed, At: now.UTC()}
		if vb := tx.Bucket(bVariants); vb != nil {
			prefix := variantKey(office, "")
			c := vb.Cursor()
			for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				var va Variant
				if err := json.Unmarshal(v, &va); err != nil {
					return fmt.Errorf("release office %s: variant %q: %w", office, k, err)
				}
				if va.Revision == rev {
					if rel.Variants == nil {
						rel.Variants = map[string][]byte{}
					}
					rel.Variants[va.Member] = va.Signed
				}
			}
		}
		return put(tx, bReleases, office, rel)
	})
	return released, err
}

// IsDistributionServer says whether a relay serving at serveURL is the
// office's distribution server: the two name the same host and port.
func (o *Office) IsDistributionServer(serveURL string) bool {
	want, err := url.Parse(o.DistributionURL())
	if err != nil || o.DistributionServer == "" {
		return false
	}
	have, err := url.Parse(serveURL)
	return err == nil && have.Host != "" && strings.EqualFold(have.Host, want.Host)
}
