package quicsrv

import (
	"slices"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/wire"
)

// A relay's check-in answer carries the list of removed members when the
// relay holds another version of it (an older one, none, or a newer one
// from before a restore), and nothing when it holds the current one;
// agents, which refuse nobody by certificate, never get it.
func TestRelaysLearnRemovedMembersAtCheckIn(t *testing.T) {
	s, st, _ := checkinServer(t)
	now := time.Now()
	if err := st.CreateToken(store.Token{ID: "tok-relay", Hash: "hash-relay", Office: "berlin", Role: "relay", Expires: now.Add(time.Hour), Uses: 1, Created: now}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Enroll("hash-relay", now, func(_ store.Token, o store.Office) (store.Member, error) {
		return store.Member{ID: "relay-1", Hostname: "relay", Office: o.Name, Home: o.Name, Role: "relay", Enrolled: now, LastSeen: now}, nil
	}); err != nil {
		t.Fatal(err)
	}
	relay := func(have uint64) *wire.RemovedMembers {
		return s.checkin("relay-1", "192.0.2.9", &wire.CheckinRequest{Hostname: "relay", RemovedMembersVersion: have}).GetCheckin().GetRemovedMembers()
	}
	if got := relay(0); got != nil {
		t.Fatalf("nobody removed yet: %v", got)
	}
	// An agent that checks in is not told of removals.
	if got := s.checkin("agent-1", "192.0.2.10", &wire.CheckinRequest{Hostname: "pc-1"}).GetCheckin().GetRemovedMembers(); got != nil {
		t.Fatalf("an agent was told %v", got)
	}
	if _, err := st.RemoveMember("agent-1", make([]byte, 32), now); err != nil {
		t.Fatal(err)
	}
	for _, have := range []uint64{0, 7} {
		got := relay(have)
		if got.GetVersion() != 1 || !slices.Equal(got.GetIds(), []string{"agent-1"}) {
			t.Fatalf("a relay holding version %d got %v", have, got)
		}
	}
	if got := relay(1); got != nil {
		t.Fatalf("a relay holding the current list got it again: %v", got)
	}
}
