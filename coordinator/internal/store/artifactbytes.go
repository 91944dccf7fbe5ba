package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bArtifactBytes = []byte("artifact_bytes")

// ArtifactBytes is one agent's cumulative figures for one artifact: what
// it fetched by source, what it sent to office peers, and the bad chunks
// peers sent it. Agents send the totals since they enrolled, so the latest
// report replaces the one before and nothing is counted twice.
type ArtifactBytes struct {
	SHA256     string `json:"sha256"`
	Member     string `json:"member"`
	Office     string `json:"office"`
	Peer       int64  `json:"peer"`
	Relay      int64  `json:"relay"`
	FileServer int64  `json:"file_server"`
	Served     int64  `json:"served"`
	BadChunks  int64  `json:"bad_chunks"`
	// At is when the figures last changed.
	At time.Time `json:"at"`
}

// sameFigures says whether a and b count the same, whenever reported.
func sameFigures(a, b ArtifactBytes) bool {
	a.At, b.At = time.Time{}, time.Time{}
	return a == b
}

func artifactBytesKey(sha, member string) []byte { return []byte(sha + "/" + member) }

// PutArtifactBytes keeps an agent's latest figures, per artifact, of the
// artifacts that have a record: agents report the last 64 they fetched
// at every check-in, removed ones too, and a member may name any SHA-256;
// kept, those would stay for good. Figures the same as those kept are
// not written again (an agent sends them all at every check-in).
func (s *Store) PutArtifactBytes(figures []ArtifactBytes) error {
	var changed []ArtifactBytes
	if err := s.db.View(func(tx *bolt.Tx) error {
		changed = changedArtifactBytes(tx, figures)
		return nil
	}); err != nil || len(changed) == 0 {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		// Looked at again: an artifact may have been removed meanwhile.
		changed := changedArtifactBytes(tx, changed)
		if len(changed) == 0 {
			return nil
		}
		b, err := tx.CreateBucketIfNotExists(bArtifactBytes)
		if err != nil {
			return err
		}
		for _, f := range changed {
			v, err := json.Marshal(f)
			if err != nil {
				return err
			}
			if err := b.Put(artifactBytesKey(f.SHA256, f.Member), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// changedArtifactBytes are the figures of recorded artifacts that differ
// from those kept.
func changedArtifactBytes(tx *bolt.Tx, figures []ArtifactBytes) []ArtifactBytes {
	var out []ArtifactBytes
	kept := tx.Bucket(bArtifactBytes)
	for _, f := range figures {
		if tx.Bucket(bArtifacts).Get([]byte(f.SHA256)) == nil {
			continue
		}
		if kept != nil {
			if v := kept.Get(artifactBytesKey(f.SHA256, f.Member)); v != nil {
				var old ArtifactBytes
				if err := json.Unmarshal(v, &old); err == nil && sameFigures(old, f) {
					continue
				}
			}
		}
		out = append(out, f)
	}
	return out
}

// deleteArtifactBytesOf removes a member's figures for every artifact
// (a removed member's would be listed, and kept, for good). The figures
// are keyed by artifact: the whole bucket is read, once per removal.
func deleteArtifactBytesOf(tx *bolt.Tx, member string) error {
	b := tx.Bucket(bArtifactBytes)
	if b == nil {
		return nil
	}
	suffix := []byte("/" + member)
	c := b.Cursor()
	for k, _ := c.First(); k != nil; {
		if bytes.HasSuffix(k, suffix) {
			if err := c.Delete(); err != nil {
				return err
			}
			k, _ = c.Seek(k) // the cursor stands on the next key after a delete
			continue
		}
		k, _ = c.Next()
	}
	return nil
}

// deleteArtifactBytesFor removes every agent's figures for one artifact.
func deleteArtifactBytesFor(tx *bolt.Tx, sha string) error {
	b := tx.Bucket(bArtifactBytes)
	if b == nil {
		return nil
	}
	prefix := []byte(sha + "/")
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// ArtifactBytesOf lists every agent's figures for one artifact.
func (s *Store) ArtifactBytesOf(sha string) ([]ArtifactBytes, error) {
	var out []ArtifactBytes
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bArtifactBytes)
		if b == nil {
			return nil
		}
		prefix := []byte(sha + "/")
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var f ArtifactBytes
			if err := json.Unmarshal(v, &f); err != nil {
				return fmt.Errorf("decode artifact figures %s: %w", k, err)
			}
			out = append(out, f)
		}
		return nil
	})
	return out, err
}
