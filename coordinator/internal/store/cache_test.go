package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// officesFromFile reads every office from the file, past the cache.
func officesFromFile(t *testing.T, s *Store) []Office {
	t.Helper()
	var out []Office
	if err := s.db.View(func(tx *bolt.Tx) (err error) {
		out, err = list[Office](tx, bOffices, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// Every write of an office is seen by the next read, whichever of
// Office, Offices and OfficesReadOnly it is, and a write that fails
// changes nothing.
func TestOfficeCacheFollowsEveryWrite(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	now := time.Now().UTC()
	enrol(t, s, "berlin", "m1")
	steps := []struct {
		name  string
		write func() error
	}{
		{"create", func() error { return s.CreateOffice(Office{Name: "paris", CheckinInterval: time.Minute}) }},
		{"update", func() error {
			_, err := s.UpdateOffice("paris", func(o *Office) error { o.Subnets = []string{"10.1.0.0/16"}; return nil })
			return err
		}},
		{"refused update", func() error {
			_, err := s.UpdateOffice("paris", func(o *Office) error { o.Mode = "relay"; return errors.New("no") })
			if err == nil {
				return errors.New("the update was not refused")
			}
			return nil
		}},
		{"key rotation started", func() error {
			_, err := s.StartKeyRotation("paris", []byte("next-key-next-key-next-key-12345"), now)
			return err
		}},
		{"key rotation advanced", func() error { _, err := s.AdvanceKeyRotation("paris", 0, now.Add(time.Hour)); return err }},
		{"member removed with a new key", func() error {
			_, err := s.RemoveMember("m1", []byte("berlin-next-key-berlin-next-key!"), now)
			return err
		}},
		{"removed", func() error { return s.DeleteOffice("paris") }},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			if _, err := s.Offices(); err != nil { // cached before the write
				t.Fatal(err)
			}
			if err := step.write(); err != nil {
				t.Fatal(err)
			}
			want := officesFromFile(t, s)
			got, err := s.Offices()
			if err != nil {
				t.Fatal(err)
			}
			shared, err := s.OfficesReadOnly()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(shared, want) {
				t.Fatalf("after %s: read %+v (shared %+v), the file has %+v", step.name, got, shared, want)
			}
			for _, o := range want {
				one, err := s.Office(o.Name)
				if err != nil || !reflect.DeepEqual(*one, o) {
					t.Fatalf("office %s after %s: %+v (%v), the file has %+v", o.Name, step.name, one, err, o)
				}
			}
			if _, err := s.Office("paris"); step.name == "removed" && !errors.Is(err, ErrNotFound) {
				t.Fatalf("a removed office is still read: %v", err)
			}
		})
	}
}

// What Office and Offices return is the caller's: changing it changes
// nothing the next caller reads.
func TestOfficesAreTheCallers(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	allow := true
	full := Office{Name: "berlin", Relays: []string{"https://r1"}, Subnets: []string{"10.0.0.0/8"}, Egress: []string{"192.0.2.1/32"},
		AllowPlainHTTP: &allow, GossipKey: []byte("key"), GossipKeys: [][]byte{[]byte("old")}}
	// Every field that refers to memory is set, so that one added later
	// and not copied by clone fails here.
	v := reflect.ValueOf(full)
	for i := range v.NumField() {
		switch f := v.Field(i); f.Kind() {
		case reflect.Slice, reflect.Map, reflect.Pointer:
			if f.IsNil() {
				t.Fatalf("field %s of the test office is not set: set it, and copy it in Office.clone", v.Type().Field(i).Name)
			}
		}
	}
	if err := s.CreateOffice(full); err != nil {
		t.Fatal(err)
	}
	spoil := func(o *Office) {
		o.Relays[0], o.Subnets[0], o.Egress[0] = "x", "x", "x"
		*o.AllowPlainHTTP = false
		o.GossipKey[0], o.GossipKeys[0][0] = 'x', 'x'
	}
	one, err := s.Office("berlin")
	if err != nil {
		t.Fatal(err)
	}
	spoil(one)
	all, err := s.Offices()
	if err != nil {
		t.Fatal(err)
	}
	spoil(&all[0])
	for _, got := range []func() (*Office, error){
		func() (*Office, error) { return s.Office("berlin") },
		func() (*Office, error) { all, err := s.OfficesReadOnly(); return &all[0], err },
	} {
		o, err := got()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*o, full) {
			t.Fatalf("read %+v after a caller changed its copy, want %+v", *o, full)
		}
	}
}

// UsersVersion changes with every write of a user that is stored, and
// with nothing else.
func TestUsersVersionCountsEveryWrite(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	if err := s.InitAuth(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	steps := []struct {
		name    string
		write   func() error
		changes bool
	}{
		{"create", func() error { return s.CreateUser(User{Name: "ann"}) }, true},
		{"create another", func() error { return s.CreateUser(User{Name: "bob"}) }, true},
		{"disable", func() error {
			_, err := s.UpdateUser("ann", func(u *User) error { u.Disabled = true; return nil })
			return err
		}, true},
		{"refused update", func() error {
			_, err := s.UpdateUser("ann", func(u *User) error { u.Disabled = false; return errors.New("no") })
			if err == nil {
				return errors.New("not refused")
			}
			return nil
		}, false},
		{"read", func() error { _, err := s.Users(); return err }, false},
		{"group made", func() error { return s.CreateGroup(Group{Name: "ops", Members: []string{"bob"}}) }, false},
		{"left a group", func() error {
			_, _, err := s.UpdateGroup("ops", now, func(g *Group) error { g.Members = nil; return nil })
			return err
		}, true},
		{"group removed", func() error {
			if _, _, err := s.UpdateGroup("ops", now, func(g *Group) error { g.Members = []string{"bob"}; return nil }); err != nil {
				return err
			}
			_, err := s.RemoveGroup("ops", now.Add(time.Second))
			return err
		}, true},
		{"removed", func() error { _, err := s.RemoveUser("bob"); return err }, true},
	}
	for _, step := range steps {
		before := s.UsersVersion()
		if err := step.write(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if changed := s.UsersVersion() != before; changed != step.changes {
			t.Errorf("%s: version changed %v, want %v", step.name, changed, step.changes)
		}
	}
}

// summariesFromFile is what GossipPeers and ReportTallies should say,
// made from the members read from the file.
func summariesFromFile(t *testing.T, s *Store, since time.Time) (map[string][]GossipPeer, map[string][]ReportTally) {
	t.Helper()
	members, err := s.Members("")
	if err != nil {
		t.Fatal(err)
	}
	peers, tallies := map[string][]GossipPeer{}, map[string]map[uint64]*ReportTally{}
	for _, m := range members {
		if m.GossipAddr != "" && !m.LastSeen.Before(since) {
			peers[m.Office] = append(peers[m.Office], GossipPeer{ID: m.ID, GossipAddr: m.GossipAddr, LastSeen: m.LastSeen})
		}
		if m.Role == "relay" || m.Report == nil {
			continue
		}
		if tallies[m.Office] == nil {
			tallies[m.Office] = map[uint64]*ReportTally{}
		}
		tl := tallies[m.Office][m.Report.Revision]
		if tl == nil {
			tl = &ReportTally{Revision: m.Report.Revision, Items: map[string]int{}, Patches: map[string]int{}}
			tallies[m.Office][m.Report.Revision] = tl
		}
		tl.Agents++
		for _, it := range m.Report.Items {
			tl.Items[it.Status]++
			if strings.HasPrefix(it.ID, "patch/") {
				tl.Patches[it.Status]++
			}
		}
	}
	out := map[string][]ReportTally{}
	for office, byRev := range tallies {
		for _, tl := range byRev {
			out[office] = append(out[office], *tl)
		}
	}
	return peers, out
}

// checkSummaries compares the summaries with the file.
func checkSummaries(t *testing.T, s *Store, since time.Time, offices []string) {
	t.Helper()
	wantPeers, wantTallies := summariesFromFile(t, s, since)
	for _, office := range offices {
		got, err := s.GossipPeers(office, since)
		if err != nil {
			t.Fatal(err)
		}
		byID := func(a, b GossipPeer) int { return strings.Compare(a.ID, b.ID) }
		slices.SortFunc(got, byID)
		want := slices.SortedFunc(slices.Values(wantPeers[office]), byID)
		if !(len(got) == 0 && len(want) == 0) && !reflect.DeepEqual(got, want) {
			t.Fatalf("gossip peers of %s: %+v, the file says %+v", office, got, want)
		}
	}
	got, err := s.ReportTallies()
	if err != nil {
		t.Fatal(err)
	}
	byRev := func(a, b ReportTally) int { return int(a.Revision) - int(b.Revision) }
	for _, m := range []map[string][]ReportTally{got, wantTallies} {
		for _, ts := range m {
			slices.SortFunc(ts, byRev)
		}
	}
	if !maps.EqualFunc(got, wantTallies, func(a, b []ReportTally) bool { return reflect.DeepEqual(a, b) }) {
		t.Fatalf("report tallies %+v, the file says %+v", got, wantTallies)
	}
}

func report(rev uint64, statuses ...string) *Report {
	r := &Report{Revision: rev, At: time.Now().UTC()}
	for i, st := range statuses {
		id := fmt.Sprintf("registry:/etc/x#%d", i)
		if i%2 == 0 {
			id = fmt.Sprintf("patch/OUT-%d", i)
		}
		r.Items = append(r.Items, ItemStatus{ID: id, Status: st})
	}
	return r
}

// The members' summaries (gossip peers, report tallies) follow every
// write of a member: enrolment, check-ins, a move, an office removed with
// its computers moved, a member removed, a refused update.
func TestMemberSummariesFollowEveryWrite(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	now := time.Now().UTC()
	since := now.Add(-time.Minute)
	offices := []string{"berlin", "paris"}
	enrol(t, s, "berlin", "m1")
	checkSummaries(t, s, since, offices) // built here
	update := func(id string, fn func(*Member)) func() error {
		return func() error { _, err := s.UpdateMember(id, fn); return err }
	}
	steps := []struct {
		name  string
		write func() error
	}{
		{"enrolled", func() error { enrol(t, s, "berlin", "m2"); enrol(t, s, "paris", "m3"); return nil }},
		{"checked in", update("m1", func(m *Member) {
			m.GossipAddr, m.LastSeen, m.Report = "10.0.0.1:7946", now, report(1, "compliant", "failed", "pending")
		})},
		{"checked in too", update("m2", func(m *Member) {
			m.GossipAddr, m.LastSeen, m.Report = "10.0.0.2:7946", now, report(1, "compliant", "compliant")
		})},
		{"new report", update("m1", func(m *Member) { m.Report = report(2, "compliant", "not_applicable") })},
		{"relay", update("m3", func(m *Member) {
			m.Role, m.GossipAddr, m.LastSeen, m.Report = "relay", "10.1.0.1:7946", now, report(1, "failed")
		})},
		{"went quiet", update("m2", func(m *Member) { m.LastSeen = now.Add(-time.Hour) })},
		{"moved", update("m1", func(m *Member) { m.Office = "paris" })},
		{"refused", func() error {
			_, err := s.UpdateMemberIf("m1", func(m *Member) error { m.Office = "berlin"; return errors.New("no") })
			if err == nil {
				return errors.New("not refused")
			}
			return nil
		}},
		{"office removed, computers moved", func() error { _, err := s.RemoveOffice("berlin", "paris"); return err }},
		{"member removed", func() error { _, err := s.DeleteMember("m1"); return err }},
	}
	for _, step := range steps {
		if err := step.write(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		t.Run(step.name, func(t *testing.T) { checkSummaries(t, s, since, offices) })
	}
}

// Check-ins of many members at once (one bbolt batch, retried when one of
// them is refused) and removals leave the summaries as the file has them:
// handlers of transactions that commit one after the other may run in
// either order.
func TestMemberSummariesUnderConcurrentWrites(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	now := time.Now().UTC()
	const members = 24
	for i := range members {
		enrol(t, s, []string{"berlin", "paris"}[i%2], fmt.Sprint("m", i))
	}
	checkSummaries(t, s, now.Add(-time.Minute), []string{"berlin", "paris"})
	var wg sync.WaitGroup
	for i := range members {
		wg.Go(func() {
			id := fmt.Sprint("m", i)
			for k := range 15 {
				if i%6 == 0 && k == 10 {
					s.DeleteMember(id)
					return
				}
				// Every third refuses, which rolls its batch back.
				s.UpdateMemberIf(id, func(m *Member) error {
					m.LastSeen, m.GossipAddr = now.Add(time.Duration(k)*time.Second), fmt.Sprintf("10.0.0.%d:%d", i, k)
					m.Report = report(uint64(k%3), []string{"compliant", "failed", "pending"}[k%3], "compliant")
					if k%3 == 2 {
						return errors.New("refused")
					}
					if k%5 == 4 {
						m.Office = []string{"berlin", "paris"}[(i+k)%2]
					}
					return nil
				})
			}
		})
	}
	wg.Wait()
	checkSummaries(t, s, now.Add(-time.Minute), []string{"berlin", "paris"})
}

// Runs kept in the form of stores from before each run had its key are
// read, moved to their keys by the next run added, and removed with
// their member.
func TestRunsOfAnOlderStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outpost.db")
	s := open(t, path)
	enrol(t, s, "berlin", "m1")
	enrol(t, s, "berlin", "m2")
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var old []Report
	for i := range MaxRuns {
		old = append(old, Report{Revision: 1, At: at.Add(time.Duration(i) * time.Minute), Seq: uint64(i + 1)})
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bRuns)
		if err != nil {
			return err
		}
		for _, id := range []string{"m1", "m2"} {
			v, _ := json.Marshal(old)
			if err := b.Put([]byte(id), v); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s = open(t, path)
	seqs := func(id string) []uint64 {
		t.Helper()
		runs, err := s.Runs(id)
		if err != nil {
			t.Fatal(err)
		}
		var out []uint64
		for _, r := range runs {
			out = append(out, r.Seq)
		}
		return out
	}
	if got := seqs("m1"); len(got) != MaxRuns || got[0] != MaxRuns || got[MaxRuns-1] != 1 {
		t.Fatalf("runs of an older store: %v, want %d down to 1", got, MaxRuns)
	}
	for k := range 3 {
		if err := s.AppendRun("m1", Report{Revision: 2, At: at.Add(time.Hour + time.Duration(k)*time.Minute), Seq: uint64(MaxRuns + 1 + k)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := seqs("m1"); len(got) != MaxRuns || got[0] != MaxRuns+3 || got[MaxRuns-1] != 4 {
		t.Fatalf("runs after three more: %v, want %d down to 4", got, MaxRuns+3)
	}
	// An unnumbered run sent again is kept once.
	again := Report{Revision: 3, At: at.Add(2 * time.Hour)}
	for range 2 {
		if err := s.AppendRun("m1", again); err != nil {
			t.Fatal(err)
		}
	}
	if got := seqs("m1"); len(got) != MaxRuns || got[0] != 0 || got[1] != MaxRuns+3 {
		t.Fatalf("runs after an unnumbered one twice: %v", got)
	}
	for _, id := range []string{"m1", "m2"} {
		if _, err := s.DeleteMember(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bRuns, bRunList} {
			if k, _ := tx.Bucket(b).Cursor().First(); k != nil {
				return fmt.Errorf("bucket %s keeps %q after its members were removed", b, k)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// enrol enrols an agent id in office, making the office if it is not
// there yet.
func enrol(t *testing.T, s *Store, office, id string) {
	t.Helper()
	now := time.Now().UTC()
	if err := s.CreateOffice(Office{Name: office, CheckinInterval: time.Minute, Created: now}); err != nil && !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
	if err := s.CreateToken(Token{ID: "t-" + id, Hash: "h-" + id, Office: office, Role: "agent", Expires: now.Add(time.Hour), Uses: 1, Created: now}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Enroll("h-"+id, now, func(_ Token, o Office) (Member, error) {
		return Member{ID: id, Hostname: "pc-" + id, Office: o.Name, Home: o.Name, Role: "agent", Enrolled: now, LastSeen: now}, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A write's summary that arrives after a later write's (their commit
// handlers ran in the other order) changes nothing.
func TestMemberSummaryOfAnOlderWriteIsIgnored(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	enrol(t, s, "berlin", "m1")
	if _, err := s.GossipPeers("berlin", time.Time{}); err != nil { // built
		t.Fatal(err)
	}
	st := &s.members
	newer := summarize(&Member{ID: "m1", Office: "berlin", GossipAddr: "10.0.0.2:7946", Role: "agent", Report: report(2, "compliant")})
	older := summarize(&Member{ID: "m1", Office: "berlin", GossipAddr: "10.0.0.1:7946", Role: "agent", Report: report(1, "failed")})
	newer.seq, older.seq = st.seq.Add(2), st.seq.Load()-1
	st.apply("m1", newer)
	st.apply("m1", older)
	peers, _ := s.GossipPeers("berlin", time.Time{})
	tallies, _ := s.ReportTallies()
	if len(peers) != 1 || peers[0].GossipAddr != "10.0.0.2:7946" || len(tallies["berlin"]) != 1 || tallies["berlin"][0].Revision != 2 {
		t.Fatalf("after an older write's summary: peers %+v, tallies %+v; want the newer write's", peers, tallies)
	}
	gone := &memberSummary{gone: true, seq: st.seq.Add(1)}
	st.apply("m1", gone)
	st.apply("m1", newer)
	if peers, _ := s.GossipPeers("berlin", time.Time{}); len(peers) != 0 {
		t.Fatalf("a removed member is back from an older write: %+v", peers)
	}
}
