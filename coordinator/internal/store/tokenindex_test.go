package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// An enrolment finds its token through the hash index: every token made
// is in it, a token removed with its office is not, and a store written
// before the index has it built when opened.
func TestTokensByHashIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outpost.db")
	s := open(t, path)
	now := time.Now()
	for _, o := range []string{"berlin", "paris"} {
		if err := s.CreateOffice(Office{Name: o}); err != nil {
			t.Fatal(err)
		}
	}
	// Many tokens, as years of installers leave behind.
	for i := range 200 {
		o := []string{"berlin", "paris"}[i%2]
		if err := s.CreateToken(Token{ID: fmt.Sprint("t-", i), Hash: fmt.Sprint("h-", i), Office: o, Uses: 1, Expires: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	enrol := func(hash, id string) error {
		_, _, err := s.Enroll(hash, now, func(tok Token, o Office) (Member, error) {
			return Member{ID: id, Office: o.Name, Home: o.Name, Role: "agent", Token: tok.ID}, nil
		})
		return err
	}
	if err := enrol("h-7", "m7"); err != nil {
		t.Fatal(err)
	}
	m, _, err := s.EnrollAgain("h-7", "")
	if err != nil || m.ID != "m7" {
		t.Fatalf("enrolment again: %v %v", m, err)
	}
	var refused *EnrollError
	if err := enrol("h-7", "m7b"); !errors.As(err, &refused) || refused.Reason == "" {
		t.Fatalf("a used-up token: %v", err)
	}
	if err := enrol("h-none", "x"); !errors.As(err, &refused) {
		t.Fatalf("an unknown token: %v", err)
	}
	// paris removed: its tokens go, and with them their index entries.
	if _, err := s.RemoveOffice("paris", "berlin"); err != nil {
		t.Fatal(err)
	}
	if err := enrol("h-9", "m9"); !errors.As(err, &refused) {
		t.Fatalf("a token of a removed office: %v", err)
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bTokenHashes).Stats().KeyN; n != 100 {
			t.Errorf("index holds %d tokens, want the 100 of berlin", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// A store from before the index: drop it and open again.
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bTokenHashes) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	if err := enrol("h-8", "m8"); err != nil {
		t.Fatalf("enrolment after the index was rebuilt: %v", err)
	}
}
