package store

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bTokenHashes indexes enrolment tokens by the hash of their secret: key
// hash, value the token's id. An enrolment finds its token in it instead
// of decoding every token ever made inside the write transaction that
// every other write waits for.
var bTokenHashes = []byte("token-hashes")

// indexTokens builds the index when the store predates it.
func indexTokens(tx *bolt.Tx) error {
	if tx.Bucket(bTokenHashes) != nil {
		return nil
	}
	idx, err := tx.CreateBucket(bTokenHashes)
	if err != nil {
		return err
	}
	return tx.Bucket(bTokens).ForEach(func(k, v []byte) error {
		var t struct{ Hash string }
		if err := json.Unmarshal(v, &t); err != nil {
			return fmt.Errorf("decode %s/%s: %w", bTokens, k, err)
		}
		return idx.Put([]byte(t.Hash), k)
	})
}

// putToken stores t and keeps the index: every write of a token goes
// through it.
func putToken(tx *bolt.Tx, t *Token) error {
	if err := tx.Bucket(bTokenHashes).Put([]byte(t.Hash), []byte(t.ID)); err != nil {
		return err
	}
	return put(tx, bTokens, t.ID, t)
}

// deleteToken removes t and its index entry.
func deleteToken(tx *bolt.Tx, t *Token) error {
	if err := tx.Bucket(bTokenHashes).Delete([]byte(t.Hash)); err != nil {
		return err
	}
	return tx.Bucket(bTokens).Delete([]byte(t.ID))
}

// tokenByHash is the token whose secret hashes to hash; ErrNotFound when
// there is none.
func tokenByHash(tx *bolt.Tx, hash string) (*Token, error) {
	id := tx.Bucket(bTokenHashes).Get([]byte(hash))
	if id == nil {
		return nil, ErrNotFound
	}
	return get[Token](tx, bTokens, string(id))
}
