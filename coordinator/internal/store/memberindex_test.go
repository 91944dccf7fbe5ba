package store

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func memberIDs(t *testing.T, s *Store, office string) []string {
	t.Helper()
	ms, err := s.Members(office)
	if err != nil {
		t.Fatalf("members of %q: %v", office, err)
	}
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	return ids
}

// The office index follows every write of a member — enrolment, a move,
// an office removed with its computers moved, a member forgotten — and a
// store written before the index had it built when opened.
func TestMembersByOfficeIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outpost.db")
	s := open(t, path)
	now := time.Now()
	for _, o := range []string{"berlin", "paris", "oslo"} {
		if err := s.CreateOffice(Office{Name: o}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateToken(Token{ID: "t-" + o, Hash: "h-" + o, Office: o, Uses: 10, Expires: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	enrol := func(office, id string) {
		t.Helper()
		if _, _, err := s.Enroll("h-"+office, now, func(_ Token, o Office) (Member, error) {
			return Member{ID: id, Office: o.Name, Home: o.Name, Role: "agent"}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	enrol("berlin", "b1")
	enrol("berlin", "b2")
	enrol("paris", "p1")
	enrol("oslo", "o1")
	if got := memberIDs(t, s, "berlin"); !slices.Equal(got, []string{"b1", "b2"}) {
		t.Fatalf("berlin: %v", got)
	}
	// A move (placement by address) takes the member out of its old office.
	if _, err := s.UpdateMember("b2", func(m *Member) { m.Office = "paris" }); err != nil {
		t.Fatal(err)
	}
	if got := memberIDs(t, s, "berlin"); !slices.Equal(got, []string{"b1"}) {
		t.Fatalf("berlin after the move: %v", got)
	}
	if got := memberIDs(t, s, "paris"); !slices.Equal(got, []string{"b2", "p1"}) {
		t.Fatalf("paris after the move: %v", got)
	}
	// An office removed with its computers moved to another.
	if _, err := s.RemoveOffice("oslo", "berlin"); err != nil {
		t.Fatal(err)
	}
	if got := memberIDs(t, s, "berlin"); !slices.Equal(got, []string{"b1", "o1"}) {
		t.Fatalf("berlin after oslo's removal: %v", got)
	}
	if got := memberIDs(t, s, "oslo"); len(got) != 0 {
		t.Fatalf("removed oslo still lists %v", got)
	}
	if _, err := s.DeleteMember("p1"); err != nil {
		t.Fatal(err)
	}
	if got := memberIDs(t, s, "paris"); !slices.Equal(got, []string{"b2"}) {
		t.Fatalf("paris after p1 was forgotten: %v", got)
	}
	if got := memberIDs(t, s, ""); !slices.Equal(got, []string{"b1", "b2", "o1"}) {
		t.Fatalf("every member: %v", got)
	}

	// A store from before the index: drop it and open again.
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bMemberOffices) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	if got := memberIDs(t, s, "berlin"); !slices.Equal(got, []string{"b1", "o1"}) {
		t.Fatalf("berlin after the index was rebuilt: %v", got)
	}
	if got := memberIDs(t, s, "paris"); !slices.Equal(got, []string{"b2"}) {
		t.Fatalf("paris after the index was rebuilt: %v", got)
	}
}

// A host for a session is found by id, by the start of one (with or
// without ag-), or by its hostname in any case; an ambiguous name is a
// conflict.
func TestFindHost(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	now := time.Now()
	if err := s.CreateOffice(Office{Name: "berlin"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(Token{ID: "t", Hash: "h", Office: "berlin", Uses: 10, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []Member{{ID: "ag-3f9c2a0011223344", Hostname: "PC-17"}, {ID: "ag-3f9c2b5566778899", Hostname: "pc-18"}, {ID: "ag-77", Hostname: "pc-18"}} {
		if _, _, err := s.Enroll("h", now, func(Token, Office) (Member, error) {
			m.Office, m.Home, m.Role = "berlin", "berlin", "agent"
			return m, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for host, want := range map[string]string{"ag-3f9c2a0011223344": "ag-3f9c2a0011223344", "pc-17": "ag-3f9c2a0011223344", "ag-3f9c2b": "ag-3f9c2b5566778899",
		"3f9c2b": "ag-3f9c2b5566778899", "3F9C2A00": "ag-3f9c2a0011223344"} {
		if m, err := s.FindHost(host); err != nil || m.ID != want {
			t.Errorf("FindHost(%q) = %v, %v; want %s", host, m, err, want)
		}
	}
	for host, want := range map[string]error{"ag-3f9c": ErrConflict, "3f9c": ErrConflict, "pc-18": ErrConflict, "ag-3f": ErrNotFound, "3f9": ErrNotFound, "pc-19": ErrNotFound} {
		if _, err := s.FindHost(host); !errors.Is(err, want) {
			t.Errorf("FindHost(%q): %v, want %v", host, err, want)
		}
	}
	// A typo of a hostname gets the nearest.
	if _, err := s.FindHost("pc-l7"); err == nil || !strings.Contains(err.Error(), `no enrolled host is called "pc-l7" (did you mean "PC-17"?)`) {
		t.Errorf("FindHost of a typo: %v", err)
	}
}
