package store

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func artifactFigures(t testing.TB, s *Store) int {
	t.Helper()
	n := 0
	if err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bArtifactBytes); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// Agents report their figures for the last 64 artifacts they fetched at
// every check-in, whatever the coordinator still has a record of, and
// any SHA-256 a member makes up is taken the same way. Figures of an
// artifact that has no record (never uploaded, or removed: removing it
// took its figures, and the next check-ins brought them back) were kept
// for good, 64 more per check-in of a member that lies; only those of
// recorded artifacts are kept now.
func TestFiguresOfArtifactsWithoutRecordNotKept(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	known := strings.Repeat("ab", 32)
	if _, err := s.PutArtifact(Artifact{SHA256: known, Size: 10, Name: "app.deb", Uploaded: time.Now()}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for round := range 10 {
		figures := []ArtifactBytes{{SHA256: known, Member: "ag-1", Office: "berlin", Relay: int64(round + 1), At: now}}
		for i := range 63 {
			sum := sha256.Sum256(fmt.Appendf(nil, "%d/%d", round, i))
			figures = append(figures, ArtifactBytes{SHA256: hex.EncodeToString(sum[:]), Member: "ag-1", Office: "berlin", Peer: 1, At: now})
		}
		if err := s.PutArtifactBytes(figures); err != nil {
			t.Fatal(err)
		}
	}
	if n := artifactFigures(t, s); n != 1 {
		t.Fatalf("%d figures kept after 10 check-ins naming 63 unknown artifacts each, want only the recorded artifact's", n)
	}
	if got, err := s.ArtifactBytesOf(known); err != nil || len(got) != 1 || got[0].Relay != 10 {
		t.Fatalf("the recorded artifact's figures: %+v, %v", got, err)
	}
	// Removed, its figures go and do not come back with the next report.
	if _, err := s.DeleteArtifact(known); err != nil {
		t.Fatal(err)
	}
	if err := s.PutArtifactBytes([]ArtifactBytes{{SHA256: known, Member: "ag-1", Office: "berlin", Relay: 11, At: now}}); err != nil {
		t.Fatal(err)
	}
	if n := artifactFigures(t, s); n != 0 {
		t.Fatalf("%d figures of a removed artifact came back with the next check-in", n)
	}
}

// Figures that did not change since the last check-in (an agent sends
// all of its 64 at every one) are not written again: the store wrote up
// to 64 records for every check-in of the fleet, changed or not.
func TestUnchangedArtifactFiguresNotWrittenAgain(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	var figures []ArtifactBytes
	for i := range 64 {
		sum := sha256.Sum256(fmt.Appendf(nil, "%d", i))
		sha := hex.EncodeToString(sum[:])
		if _, err := s.PutArtifact(Artifact{SHA256: sha, Size: 10, Name: "a", Uploaded: time.Now()}); err != nil {
			t.Fatal(err)
		}
		figures = append(figures, ArtifactBytes{SHA256: sha, Member: "ag-1", Office: "berlin", Peer: int64(i), At: time.Now()})
	}
	if err := s.PutArtifactBytes(figures); err != nil {
		t.Fatal(err)
	}
	before := s.db.Stats()
	for i := range figures {
		figures[i].At = figures[i].At.Add(2 * time.Minute) // the next check-in
	}
	if err := s.PutArtifactBytes(figures); err != nil {
		t.Fatal(err)
	}
	after := s.db.Stats()
	if d := after.Sub(&before); d.TxStats.GetWrite() != 0 {
		t.Fatalf("the same figures again made %d writes", d.TxStats.GetWrite())
	}
	figures[5].Relay = 100
	if err := s.PutArtifactBytes(figures); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ArtifactBytesOf(figures[5].SHA256); len(got) != 1 || got[0].Relay != 100 {
		t.Fatalf("a changed figure was not kept: %+v", got)
	}
}
