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
	SHA256     string    `json:"sha256"`
	Member     string    `json:"member"`
	Office     string    `json:"office"`
	Peer       int64     `json:"peer"`
	Relay      int64     `json:"relay"`
	FileServer int64     `json:"file_server"`
	Served     int64     `json:"served"`
	BadChunks  int64     `json:"bad_chunks"`
	At         time.Time `json:"at"`
}

func artifactBytesKey(sha, member string) []byte { return []byte(sha + "/" + member) }

// PutArtifactBytes keeps an agent's latest figures, per artifact.
func (s *Store) PutArtifactBytes(figures []ArtifactBytes) error {
	if len(figures) == 0 {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bArtifactBytes)
		if err != nil {
			return err
		}
		for _, f := range figures {
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
