package agent

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/agent/internal/state"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/member"
	"github.com/outposthq/outpost/pkg/wire"
)

// An acknowledgement of runs before the one waiting for its roll-up is an
// old one a peer plays back: it does not count as the report getting
// through, so the member still falls back to a direct check-in.
func TestOldRollupAckIsNoNews(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	st, err := state.Open(t.TempDir(), pub)
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{id: &member.Identity{ID: "ag-1", PolicyKey: pub}, state: st, log: logging.Discard(), kick: make(chan struct{}, 1)}
	r, err := newRollup(a, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ack := func(seq uint64) *wire.SignedRollupAck {
		s, err := wire.SignRollupAck(priv, &wire.RollupAck{MemberId: "ag-1", AckedSeq: seq, AtUnix: time.Now().Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	since := time.Now().Add(-time.Hour)
	r.unackedSince, r.unackedSeq = since, 7 // run 7 went to the roll-up an hour ago

	r.acked(ack(6)) // played back from before
	if !r.unackedSince.Equal(since) {
		t.Fatal("an acknowledgement of run 6 passed for one of run 7")
	}
	r.acked(ack(7))
	if !r.unackedSince.IsZero() {
		t.Fatal("the acknowledgement of run 7 did not count")
	}
}
