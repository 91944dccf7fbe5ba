package quicsrv

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/coordinator/internal/auth"
	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

// withAuth gives s a real authorization server over st.
func withAuth(t *testing.T, s *Server, st *store.Store) *auth.Server {
	t.Helper()
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	as, err := auth.New(auth.Config{PerMinute: 10, KDF: auth.KDF{Time: 1, MemoryKiB: 64, Threads: 1}}, st, key, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s.SetAccess(as)
	return as
}

// revoked is the revocation list a check-in answer carries, by user.
func revoked(t *testing.T, s *Server) map[string]*wire.Revocation {
	t.Helper()
	resp := s.checkin("agent-1", "192.0.2.10", &wire.CheckinRequest{Revision: 1})
	if err := resp.AsError(); err != nil {
		t.Fatal(err)
	}
	sr := resp.GetCheckin().GetRevocations()
	var l wire.RevocationList
	if err := wire.Unmarshal(sr.GetList(), &l); err != nil {
		t.Fatal(err)
	}
	out := map[string]*wire.Revocation{}
	for _, r := range l.GetRevocations() {
		out[r.GetUser()] = r
	}
	return out
}

// The revocation list a check-in answer carries is kept between
// check-ins, and every change of a user that changes it reaches the next
// answer: a user disabled, enabled, signed out everywhere, taken out of a
// group, removed; and a new verifier's list replaces the old one's.
func TestCheckinRevocationsFollowUsers(t *testing.T) {
	s, st, _ := checkinServer(t)
	as := withAuth(t, s, st)
	now := time.Now()
	for _, u := range []string{"ann", "bob", "eve"} {
		if err := st.CreateUser(store.User{Name: u, Created: now}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CreateGroup(store.Group{Name: "ops", Members: []string{"eve"}, Created: now}); err != nil {
		t.Fatal(err)
	}
	if got := revoked(t, s); len(got) != 0 {
		t.Fatalf("revoked %v before anything happened", got)
	}
	steps := []struct {
		name  string
		write func() error
		check func(map[string]*wire.Revocation) bool
	}{
		{"disabled", func() error {
			_, err := st.UpdateUser("ann", func(u *store.User) error { u.Disabled = true; return nil })
			return err
		}, func(l map[string]*wire.Revocation) bool { return l["ann"].GetDisabled() }},
		{"enabled", func() error {
			_, err := st.UpdateUser("ann", func(u *store.User) error { u.Disabled = false; return nil })
			return err
		}, func(l map[string]*wire.Revocation) bool { return l["ann"] == nil }},
		{"signed out everywhere", func() error { return as.Revoke("bob") },
			func(l map[string]*wire.Revocation) bool { return l["bob"].GetNotBeforeUnixMs() > 0 }},
		{"left a group", func() error {
			_, _, err := st.UpdateGroup("ops", time.Now(), func(g *store.Group) error { g.Members = nil; return nil })
			return err
		}, func(l map[string]*wire.Revocation) bool { return l["eve"].GetNotBeforeUnixMs() > 0 }},
		{"removed", func() error { _, err := st.RemoveUser("bob"); return err },
			func(l map[string]*wire.Revocation) bool { return l["bob"] == nil && l["eve"] != nil }},
	}
	for _, step := range steps {
		revoked(t, s) // kept before the change
		if err := step.write(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := revoked(t, s); !step.check(got) {
			t.Fatalf("after %s the check-in answer revokes %v", step.name, got)
		}
	}
	// Another verifier (as at a restart): its list, not the old one's.
	s.SetAccess(&refusingVerifier{})
	if resp := s.checkin("agent-1", "192.0.2.10", &wire.CheckinRequest{Revision: 1}); resp.GetCheckin().GetRevocations() != nil {
		t.Fatalf("a new verifier without a list: the answer still carries the old one")
	}
}

// A change of an office reaches the next check-in's answer and its
// placement: offices are kept between check-ins.
func TestCheckinFollowsOfficeChanges(t *testing.T) {
	s, st, _ := checkinServer(t)
	checkin := func() *wire.CheckinResponse {
		t.Helper()
		resp := s.checkin("agent-1", "192.0.2.10", &wire.CheckinRequest{Revision: 1, Addresses: []string{"10.9.0.5"}})
		if err := resp.AsError(); err != nil {
			t.Fatal(err)
		}
		return resp.GetCheckin()
	}
	if got := checkin().GetOffice(); got.GetCheckinIntervalSeconds() != 60 {
		t.Fatalf("interval %d, want 60", got.GetCheckinIntervalSeconds())
	}
	if _, err := st.UpdateOffice("berlin", func(o *store.Office) error {
		o.CheckinInterval, o.Mode, o.Relays = 5*time.Minute, "relay", []string{"https://relay.berlin:8090"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got := checkin().GetOffice()
	if got.GetCheckinIntervalSeconds() != 300 || got.GetMode() != wire.Mode_MODE_RELAY || len(got.GetRelays()) != 1 {
		t.Fatalf("after the office changed the answer says %v", got)
	}
	// A new office whose subnets hold the agent's address (seen there):
	// the next check-in places it there.
	if err := st.CreateOffice(store.Office{Name: "paris", Mode: "direct", CheckinInterval: time.Minute, Subnets: []string{"192.0.2.0/24"}}); err != nil {
		t.Fatal(err)
	}
	if got := checkin().GetOffice(); got.GetName() != "paris" {
		t.Fatalf("placed in %s, want paris, the new office whose subnet it is in", got.GetName())
	}
	if _, err := st.UpdateOffice("paris", func(o *store.Office) error { o.Subnets = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if got := checkin().GetOffice(); got.GetName() != "berlin" {
		t.Fatalf("placed in %s, want berlin once paris gave up its subnet", got.GetName())
	}
}

// The gossip seeds of a check-in's answer follow the office's members:
// one that checks in is named, one removed or moved away is not.
func TestCheckinSeedsFollowMembers(t *testing.T) {
	s, st, _ := checkinServer(t)
	now := time.Now()
	for _, id := range []string{"agent-2", "agent-3"} {
		if err := st.CreateToken(store.Token{ID: "tok-" + id, Hash: "hash-" + id, Office: "berlin", Role: "agent", Expires: now.Add(time.Hour), Uses: 1, Created: now}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.Enroll("hash-"+id, now, func(_ store.Token, o store.Office) (store.Member, error) {
			return store.Member{ID: id, Hostname: id, Office: o.Name, Home: o.Name, Role: "agent", Enrolled: now, LastSeen: now}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	seeds := func() []string {
		t.Helper()
		resp := s.checkin("agent-1", "192.0.2.10", &wire.CheckinRequest{Revision: 1})
		if err := resp.AsError(); err != nil {
			t.Fatal(err)
		}
		return resp.GetCheckin().GetOffice().GetGossipSeeds()
	}
	if got := seeds(); len(got) != 0 {
		t.Fatalf("seeds %v before any peer said where it gossips", got)
	}
	for i, id := range []string{"agent-2", "agent-3"} {
		addr := []string{"10.0.0.2:7946", "10.0.0.3:7946"}[i]
		if resp := s.checkin(id, "192.0.2.1", &wire.CheckinRequest{Revision: 1, GossipAddress: addr}); resp.AsError() != nil {
			t.Fatal(resp.AsError())
		}
	}
	if got := seeds(); len(got) != 2 {
		t.Fatalf("seeds %v, want both peers", got)
	}
	if _, err := st.DeleteMember("agent-2"); err != nil {
		t.Fatal(err)
	}
	if got := seeds(); len(got) != 1 || got[0] != "10.0.0.3:7946" {
		t.Fatalf("seeds %v after agent-2 was removed, want agent-3's alone", got)
	}
	if err := st.CreateOffice(store.Office{Name: "paris", Mode: "direct", CheckinInterval: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateMember("agent-3", func(m *store.Member) { m.Office, m.Home = "paris", "paris" }); err != nil {
		t.Fatal(err)
	}
	if got := seeds(); len(got) != 0 {
		t.Fatalf("seeds %v after agent-3 moved to another office", got)
	}
}
