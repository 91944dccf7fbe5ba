package store

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Agents report cumulative figures for the last 64 artifacts they
// fetched, and the coordinator keeps one record per (artifact, member)
// for good: nothing removes them when the member is removed (DeleteMember
// takes its runs and its permission list only) nor when no policy names
// the artifact any more. The agent's own bound (64) does not bound the
// coordinator's: every new artifact adds a record per agent that fetched
// it, and the records of computers removed years ago stay, and are still
// listed by outpost artifact show.
func TestReviewTimeRemovedMembersArtifactFiguresGoWithIt(t *testing.T) {
	st, err := Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	if err := st.CreateOffice(Office{Name: "berlin", Mode: "direct", CheckinInterval: time.Minute, Created: now}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateToken(Token{ID: "tok", Hash: "hash", Office: "berlin", Role: "agent", Expires: now.Add(time.Hour), Uses: 1, Created: now}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Enroll("hash", now, func(_ Token, o Office) (Member, error) {
		return Member{ID: "ag-0000000000000001", Hostname: "pc-1", Office: o.Name, Home: o.Name, Role: "agent", Enrolled: now, LastSeen: now}, nil
	}); err != nil {
		t.Fatal(err)
	}
	sha := strings.Repeat("ab", 32)
	if err := st.PutArtifactBytes([]ArtifactBytes{{SHA256: sha, Member: "ag-0000000000000001", Office: "berlin", FileServer: 1 << 30, At: now}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DeleteMember("ag-0000000000000001"); err != nil {
		t.Fatal(err)
	}
	left, err := st.ArtifactBytesOf(sha)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Fatalf("the figures of removed member %s are kept (and shown) for good: %+v", left[0].Member, left[0])
	}
}
