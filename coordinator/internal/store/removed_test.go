package store

import (
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// A removed member is listed for as long as a certificate of its may
// live, each removal raising the list's version, and is forgotten after.
func TestRemovedMembersAreListedWhileTheirCertificatesMayLive(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	if v, ids, err := s.RemovedMembers(time.Now()); err != nil || v != 0 || ids != nil {
		t.Fatalf("no removal yet: version %d, %q, %v", v, ids, err)
	}
	if err := s.CreateOffice(Office{Name: "hq"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(Token{ID: "t-hq", Hash: "h-hq", Office: "hq", Uses: 10, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ag-02", "ag-01", "ag-03"} {
		if _, _, err := s.Enroll("h-hq", time.Now(), func(_ Token, o Office) (Member, error) {
			return Member{ID: id, Office: o.Name, Home: o.Name, Role: "agent"}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for i, id := range []string{"ag-02", "ag-01"} {
		if _, err := s.RemoveMember(id, []byte("next gossip key 32 bytes long..."), t0.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	v, ids, err := s.RemovedMembers(t0.Add(time.Hour))
	if err != nil || v != 2 || !slices.Equal(ids, []string{"ag-01", "ag-02"}) {
		t.Fatalf("after two removals: version %d, %q, %v", v, ids, err)
	}
	if got, err := s.RemovedMembersVersion(); err != nil || got != v {
		t.Fatalf("RemovedMembersVersion %d, %v; want %d", got, err, v)
	}
	// Past the first one's certificates' life: it is no longer listed,
	// and the next removal forgets it for good.
	later := t0.Add(RemovedKept + 30*time.Minute)
	if _, ids, _ := s.RemovedMembers(later); !slices.Equal(ids, []string{"ag-01"}) {
		t.Fatalf("a year on: %q", ids)
	}
	if _, err := s.RemoveMember("ag-03", nil, later); err != nil {
		t.Fatal(err)
	}
	if v, ids, _ := s.RemovedMembers(later); v != 3 || !slices.Equal(ids, []string{"ag-01", "ag-03"}) {
		t.Fatalf("after a third removal: version %d, %q", v, ids)
	}
	if _, ids, _ := s.RemovedMembers(t0); !slices.Equal(ids, []string{"ag-01", "ag-03"}) {
		t.Fatalf("ag-02's record was not forgotten: %q", ids)
	}
}
