package quicsrv

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/wire"
)

// A member that sends its gossip key at a direct check-in gets a pass for
// it: its id, the role the coordinator knows, its key, an end 90 days
// off, signed with the policy key. One that sends none gets none. A
// rolled-up check-in that asks for one is told to check in directly.
func TestCheckinIssuesMemberPasses(t *testing.T) {
	s, _, sign := rollupOffice(t)
	pub, _, _ := ed25519.GenerateKey(nil)
	now := time.Now()
	resp := s.checkin("agent-1", "192.0.2.10", &wire.CheckinRequest{Hostname: "pc-1", GossipKey: pub})
	if err := resp.AsError(); err != nil {
		t.Fatal(err)
	}
	b, err := wire.EncodePass(resp.GetCheckin().GetMemberPass())
	if err != nil {
		t.Fatal(err)
	}
	p, err := wire.VerifyPass(s.ca.PolicyKey().Public().(ed25519.PublicKey), b, now)
	if err != nil {
		t.Fatal(err)
	}
	if p.GetMemberId() != "agent-1" || p.GetRole() != wire.Role_ROLE_AGENT || !pub.Equal(ed25519.PublicKey(p.GetGossipKey())) ||
		p.GetNotAfterUnix() != wire.PassExpiry(now).Unix() {
		t.Fatalf("pass %v", p)
	}
	for _, key := range [][]byte{nil, pub[:16]} {
		resp = s.checkin("agent-1", "192.0.2.10", &wire.CheckinRequest{Hostname: "pc-1", GossipKey: key})
		if resp.GetCheckin().GetMemberPass() != nil {
			t.Errorf("gossip key %x got a pass", key)
		}
	}

	ackOf := func(req *wire.CheckinRequest) *wire.RollupAck {
		t.Helper()
		resp := s.checkin("carrier-1", "192.0.2.20", &wire.CheckinRequest{Hostname: "pc-2",
			Rollup: []*wire.SignedCheckin{sign(time.Now(), req)}})
		acks := resp.GetCheckin().GetRollupAcks()
		if len(acks) != 1 {
			t.Fatalf("%d acks", len(acks))
		}
		ack, err := wire.VerifyRollupAck(s.ca.PolicyKey().Public().(ed25519.PublicKey), acks[0])
		if err != nil {
			t.Fatal(err)
		}
		return ack
	}
	digest := wire.OfficeDigest(resp.GetCheckin().GetOffice()) // what a direct check-in told it
	if ack := ackOf(&wire.CheckinRequest{Hostname: "pc-1", OfficeDigest: digest}); ack.GetCheckinDirectly() {
		t.Fatal("a rolled-up check-in that asks for nothing is told to check in directly")
	}
	time.Sleep(1100 * time.Millisecond) // signatures count in seconds
	if ack := ackOf(&wire.CheckinRequest{Hostname: "pc-1", OfficeDigest: digest, GossipKey: pub}); !ack.GetCheckinDirectly() {
		t.Fatal("a rolled-up check-in that asks for a pass is not told to check in directly")
	}
}

// A member that reports through the roll-up learns of a new revision from
// its office. One whose peers cannot hand it over (each holds a policy of
// its own) would not learn of it until a direct check-in, one report in
// 30; two intervals after a revision went out, a rolled-up check-in still
// behind it is told to check in directly. One behind a revision just out
// is not: its office tells it, and asking every member to would undo the
// roll-up.
func TestRolledUpMemberBehindAnOldRevisionChecksInDirectly(t *testing.T) {
	s, st, sign := rollupOffice(t)
	resp := s.checkin("agent-1", "192.0.2.10", &wire.CheckinRequest{Hostname: "pc-1"})
	digest := wire.OfficeDigest(resp.GetCheckin().GetOffice())
	publish := func(at time.Time) uint64 {
		t.Helper()
		p, err := st.PublishPolicy("berlin", "items: []\n", at, func(uint64) ([]byte, map[string][]byte, error) { return []byte("signed"), nil, nil })
		if err != nil {
			t.Fatal(err)
		}
		return p.Revision
	}
	at := time.Now().Truncate(time.Second)
	ack := func(rev uint64) bool {
		t.Helper()
		at = at.Add(time.Second) // each newer than the last
		resp := s.checkin("carrier-1", "192.0.2.20", &wire.CheckinRequest{Hostname: "pc-2",
			Rollup: []*wire.SignedCheckin{sign(at, &wire.CheckinRequest{Hostname: "pc-1", OfficeDigest: digest, Revision: rev})}})
		acks := resp.GetCheckin().GetRollupAcks()
		if len(acks) != 1 {
			t.Fatalf("%d acks", len(acks))
		}
		a, err := wire.VerifyRollupAck(s.ca.PolicyKey().Public().(ed25519.PublicKey), acks[0])
		if err != nil {
			t.Fatal(err)
		}
		return a.GetCheckinDirectly()
	}
	// The office's interval is a minute (checkinServer).
	old := publish(time.Now().Add(-3 * time.Minute))
	if !ack(old - 1) {
		t.Error("a member behind a revision out for three intervals is not told to check in directly")
	}
	if ack(old) {
		t.Error("a member at the revision is told to check in directly")
	}
	publish(time.Now())
	if ack(old) {
		t.Error("a member behind a revision just out is told to check in directly")
	}
}
