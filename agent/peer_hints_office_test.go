package agent

import (
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/gossip"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// policyRequests counts the policy requests a peer hears, by office.
type policyRequests struct {
	mu sync.Mutex
	by map[string]int
}

func (r *policyRequests) count(office string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.by[office]
}

// A revision is a number within one office: revision 40 of the head
// office says nothing of a branch at revision 12. A laptop that heard in
// the head office that a peer holds revision 40, then moved to the
// branch, took that peer for the holder of a newer branch policy and
// asked it for one at every tick of its office loop (every 5 s), for as
// long as the branch stayed under 40 — for months, at an address on a
// network it had left. What a peer is known to hold is known of the
// office it was heard in.
func TestPeerRevisionHintsOfAnotherOfficeAreNotAskedAfterAMove(t *testing.T) {
	o := newGossipOffice(t, "127.0.0.201")
	a := o.a
	reqs := &policyRequests{by: map[string]int{}}
	o.join(t, "ag-2", "127.0.0.203", peerHandler{reqs})
	var addr string
	for _, p := range a.gossip.peers() {
		if p.Name == "ag-2" {
			addr = p.Addr
		}
	}
	// ag-2 tells the office (wing) it holds revision 40; ag-1 holds 5.
	a.peers.rumor("ag-2", &wire.RevisionRumor{Office: "wing", Revision: 40, HolderAddr: addr})
	testutil.Eventually(t, 10*time.Second, func() bool { return reqs.count("wing") > 0 },
		"ag-1 asks ag-2 for revision 40 of its office")

	// The coordinator moves ag-1 to the annex, which is at revision 12
	// (not held yet: ag-1 holds nothing of the annex).
	a.mu.Lock()
	a.office, a.info = "annex", &wire.OfficeInfo{Name: "annex", Revision: 12}
	a.mu.Unlock()
	for range 3 {
		a.peers.askHolder() // what each tick of the office loop does
	}
	a.peers.mu.Lock()
	var asked []string
	for k := range a.peers.asked {
		if k != "wing/40" {
			asked = append(asked, k)
		}
	}
	a.peers.mu.Unlock()
	if len(asked) > 0 {
		t.Fatalf("after moving to the annex, ag-1 asked a peer for %v on the word of a revision heard of in wing: "+
			"a hint of one office taken for another's, asked for at every tick", asked)
	}
}

// peerHandler counts the policy requests among the messages a peer gets.
type peerHandler struct{ r *policyRequests }

func (peerHandler) PeerChanged(gossip.Peer) {}

func (h peerHandler) Message(b []byte) {
	var m wire.PeerMessage
	if proto.Unmarshal(b, &m) != nil {
		return
	}
	if req := m.GetPolicyRequest(); req != nil {
		h.r.mu.Lock()
		h.r.by[req.GetOffice()]++
		h.r.mu.Unlock()
	}
}
