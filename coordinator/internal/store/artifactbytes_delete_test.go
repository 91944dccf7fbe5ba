package store

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Agents report cumulative figures for the last 64 artifacts they
// fetched, and the coordinator keeps one record per (artifact, member).
// A removed member's go with it (with its runs and its permission list):
// kept, the records of computers removed years ago would stay, and still
// be listed by outpost artifact show. Other members' stay.
func TestRemovedMembersArtifactFiguresGoWithIt(t *testing.T) {
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
	sha, sha2 := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	for _, h := range []string{sha, sha2} {
		if _, err := st.PutArtifact(Artifact{SHA256: h, Size: 1, Name: h[:8], Uploaded: now}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.PutArtifactBytes([]ArtifactBytes{
		{SHA256: sha, Member: "ag-0000000000000001", Office: "berlin", FileServer: 1 << 30, At: now},
		{SHA256: sha, Member: "ag-0000000000000002", Office: "berlin", Peer: 1 << 30, At: now},
		{SHA256: sha, Member: "ag-00000000000000011", Office: "berlin", Peer: 1 << 30, At: now},
		{SHA256: sha2, Member: "ag-0000000000000001", Office: "berlin", Relay: 1 << 20, At: now},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DeleteMember("ag-0000000000000001"); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{sha, sha2} {
		left, err := st.ArtifactBytesOf(h)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range left {
			if f.Member == "ag-0000000000000001" {
				t.Fatalf("the figures of removed member %s are kept (and shown) for good: %+v", f.Member, f)
			}
		}
		if h == sha && len(left) != 2 {
			t.Fatalf("other members' figures went too: %+v", left)
		}
	}
}
