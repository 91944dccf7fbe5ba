package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bMeta = []byte("meta") // facts about the store itself

// Snapshot is a consistent copy of the whole store: Size bytes, written
// by WriteTo.
type Snapshot interface {
	Size() int64
	WriteTo(w io.Writer) (int64, error)
}

// Snapshot runs fn with a copy of the store as it is at one moment,
// while writes go on (a read transaction).
func (s *Store) Snapshot(fn func(Snapshot) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(tx) })
}

// Restored is when a store was put back from a backup, and when that
// backup was made.
type Restored struct {
	At         time.Time `json:"at"`
	BackupMade time.Time `json:"backup_made"`
}

// MarkRestored records that the store was just put back from a backup:
// members may then hold revisions newer than the store's (RaiseRevision).
func (s *Store) MarkRestored(r Restored) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bMeta); err != nil {
			return err
		}
		return put(tx, bMeta, "restored", r)
	})
}

// LastRestore is the store's last restore; ErrNotFound if it never was.
func (s *Store) LastRestore() (*Restored, error) {
	var out *Restored
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		if tx.Bucket(bMeta) == nil {
			return ErrNotFound
		}
		out, err = get[Restored](tx, bMeta, "restored")
		return err
	})
	return out, err
}

// RaiseRevision makes the office's next revision come after above, when
// its last one does not already: a store restored from a backup is behind
// the revisions its members hold, which refuse any revision not newer.
// It says whether it raised anything.
func (s *Store) RaiseRevision(office string, above uint64) (bool, error) {
	raised := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bOffices).Get([]byte(office)) == nil {
			return fmt.Errorf("office %s: %w", office, ErrNotFound)
		}
		var rev uint64
		if v := tx.Bucket(bRevisions).Get([]byte(office)); v != nil {
			if err := json.Unmarshal(v, &rev); err != nil {
				return fmt.Errorf("decode revision of %s: %w", office, err)
			}
		}
		if rev >= above {
			return nil
		}
		raised = true
		return put(tx, bRevisions, office, above)
	})
	return raised, err
}

// Revision is the last revision issued for an office (0 for none).
func (s *Store) Revision(office string) (uint64, error) {
	var rev uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bRevisions).Get([]byte(office))
		if v == nil {
			return nil
		}
		return json.Unmarshal(v, &rev)
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return 0, fmt.Errorf("revision of %s: %w", office, err)
	}
	return rev, nil
}
