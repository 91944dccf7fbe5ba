package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bRunList keeps each kept run of a member under its own key: member id,
// NUL, the run's place in the member's history (8 bytes, big-endian, so
// that bbolt keeps them in order). A check-in adds one run and drops the
// oldest; kept as one value per member (bRuns), each check-in decoded and
// wrote again the member's whole history, 20 runs of every item.
var bRunList = []byte("run_list")

func runKey(id string, n uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(id), 0), n)
}

// runKeys are the keys of member id's kept runs, oldest first.
func runKeys(b *bolt.Bucket, id string) [][]byte {
	prefix := append([]byte(id), 0)
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	return keys
}

func appendRun(tx *bolt.Tx, id string, r Report) error {
	b, err := tx.CreateBucketIfNotExists(bRunList)
	if err != nil {
		return err
	}
	if err := moveOldRuns(tx, b, id); err != nil {
		return err
	}
	keys := runKeys(b, id)
	var next uint64
	if n := len(keys); n > 0 {
		last := keys[n-1]
		next = binary.BigEndian.Uint64(last[len(last)-8:]) + 1
		// Runs with a number are deduplicated by it (UpdateMember); only
		// unnumbered ones need this guess.
		if r.Seq == 0 {
			var prev struct {
				Revision uint64    `json:"revision"`
				At       time.Time `json:"at"`
			}
			if err := json.Unmarshal(b.Get(last), &prev); err != nil {
				return fmt.Errorf("decode a run of %s: %w", id, err)
			}
			if prev.Revision == r.Revision && prev.At.Equal(r.At) {
				return nil
			}
		}
	}
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode a run of %s: %w", id, err)
	}
	if err := b.Put(runKey(id, next), v); err != nil {
		return err
	}
	for _, k := range keys[:max(0, len(keys)+1-MaxRuns)] {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// moveOldRuns moves member id's runs kept as one value (bRuns, stores
// from before bRunList) to their own keys, in the transaction that adds
// its next run.
func moveOldRuns(tx *bolt.Tx, b *bolt.Bucket, id string) error {
	old := tx.Bucket(bRuns)
	if old == nil {
		return nil
	}
	v := old.Get([]byte(id))
	if v == nil {
		return nil
	}
	var runs []Report
	if err := json.Unmarshal(v, &runs); err != nil {
		return fmt.Errorf("decode runs of %s: %w", id, err)
	}
	for i, r := range runs[max(0, len(runs)-MaxRuns):] {
		enc, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode a run of %s: %w", id, err)
		}
		if err := b.Put(runKey(id, uint64(i)), enc); err != nil {
			return err
		}
	}
	return old.Delete([]byte(id))
}

// deleteRuns removes member id's runs, in either form.
func deleteRuns(tx *bolt.Tx, id string) error {
	if old := tx.Bucket(bRuns); old != nil {
		if err := old.Delete([]byte(id)); err != nil {
			return err
		}
	}
	b := tx.Bucket(bRunList)
	if b == nil {
		return nil
	}
	for _, k := range runKeys(b, id) {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Runs returns the kept runs of member id, newest first.
func (s *Store) Runs(id string) ([]Report, error) {
	var runs []Report
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bMembers).Get([]byte(id)) == nil {
			return fmt.Errorf("member %s: %w", id, ErrNotFound)
		}
		// A member that has not checked in since its store was upgraded.
		if old := tx.Bucket(bRuns); old != nil {
			if v := old.Get([]byte(id)); v != nil {
				if err := json.Unmarshal(v, &runs); err != nil {
					return fmt.Errorf("decode runs of %s: %w", id, err)
				}
			}
		}
		b := tx.Bucket(bRunList)
		if b == nil {
			return nil
		}
		for _, k := range runKeys(b, id) {
			var r Report
			if err := json.Unmarshal(b.Get(k), &r); err != nil {
				return fmt.Errorf("decode a run of %s: %w", id, err)
			}
			runs = append(runs, r)
		}
		return nil
	})
	runs = runs[max(0, len(runs)-MaxRuns):]
	for i, j := 0, len(runs)-1; i < j; i, j = i+1, j-1 {
		runs[i], runs[j] = runs[j], runs[i]
	}
	return runs, err
}
