package store

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// fillAndFree writes n values of 4,000 bytes into a scratch bucket and
// deletes the bucket: n pages or so become free, as when a year of audit
// events is pruned.
func fillAndFree(t testing.TB, s *Store, n int) {
	t.Helper()
	val := make([]byte, 4000)
	for i := 0; i < n; i += 1000 {
		if err := s.db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("scratch"))
			if err != nil {
				return err
			}
			for j := i; j < min(i+1000, n); j++ {
				if err := b.Put(fmt.Appendf(nil, "%08d", j), val); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("scratch")) }); err != nil {
		t.Fatal(err)
	}
}

// bytesForOneWrite is what the store allocates to commit one small write.
func bytesForOneWrite(t testing.TB, s *Store, office string) int64 {
	t.Helper()
	before := s.db.Stats()
	if err := s.CreateOffice(Office{Name: office}); err != nil {
		t.Fatal(err)
	}
	after := s.db.Stats()
	d := after.Sub(&before)
	return d.TxStats.GetPageAlloc()
}

// Space freed in the store (pruned audit events, removed members) is
// reused, but it must not make every later write dearer: with the
// freelist written at each commit, a store that had freed 200 MB wrote
// 400 KB more for every check-in, for good.
func TestFreedPagesDoNotSlowEveryWrite(t *testing.T) {
	small := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	fillAndFree(t, small, 100)
	large := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	fillAndFree(t, large, 50000)
	s, l := bytesForOneWrite(t, small, "berlin"), bytesForOneWrite(t, large, "berlin")
	t.Logf("one small write after freeing 100 pages: %d bytes; after 50,000: %d bytes", s, l)
	if l > s+4*4096 {
		t.Fatalf("one small write costs %d bytes after 50,000 pages were freed, %d after 100: every commit pays for what was ever deleted", l, s)
	}
}

// The free pages are found again after a restart (they are not recorded
// in the file), so the file does not grow when a reopened store writes
// as much as it deleted before.
func TestFreedPagesReusedAfterReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outpost.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fillAndFree(t, s, 5000)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	fillAndFree(t, s, 5000)
	again, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if again.Size() > fi.Size() {
		t.Fatalf("the store grew from %d to %d bytes writing what it had freed before the restart", fi.Size(), again.Size())
	}
}
