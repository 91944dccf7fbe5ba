package agent

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/gossip"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// The coordinator's roll-up acknowledgement is signed, but an old one can
// be played back by any holder of the office key: one with
// checkin_directly set would make the member check in directly (and so
// run its policy again) each time. An acknowledgement signed before the
// member's last direct check-in tells it nothing new and is ignored.
func TestRollupAckSignedBeforeTheLastDirectCheckinIsIgnored(t *testing.T) {
	o := newGossipOffice(t, "127.0.0.75")
	a := o.a
	old, err := wire.SignRollupAck(o.priv, &wire.RollupAck{MemberId: "ag-1", AckedSeq: 1, AtUnix: time.Now().Add(-365 * 24 * time.Hour).Unix(), CheckinDirectly: true})
	if err != nil {
		t.Fatal(err)
	}
	a.rollup.checkedIn(false) // the member checked in directly just now
	kicks := 0
	for range 3 {
		o.send(t, &wire.PeerMessage{From: "ag-evil", Body: &wire.PeerMessage_RollupAck{RollupAck: old}})
		select {
		case <-a.kick:
			kicks++
		case <-time.After(2 * time.Second):
		}
		a.rollup.checkedIn(false) // the direct check-in it asked for
	}
	if kicks > 0 {
		t.Fatalf("an acknowledgement signed a year ago, played back 3 times, made %d direct check-ins; want none", kicks)
	}
}

// The time of the last direct check-in is the coordinator's, as its
// answer gives it: an acknowledgement the coordinator signed after it is
// taken even when this member's clock is ahead of the coordinator's.
func TestRollupAckSignedAfterTheLastDirectCheckinIsTakenWhateverTheMembersClock(t *testing.T) {
	o := newGossipOffice(t, "127.0.0.89")
	a := o.a
	coordinator := time.Now().Add(-time.Hour) // this member's clock is an hour ahead
	a.rollup.clock(coordinator.Unix())
	a.rollup.checkedIn(false)
	ack, err := wire.SignRollupAck(o.priv, &wire.RollupAck{MemberId: "ag-1", AtUnix: coordinator.Add(time.Second).Unix(), CheckinDirectly: true})
	if err != nil {
		t.Fatal(err)
	}
	a.rollup.acked(ack)
	if !a.rollup.directWanted() {
		t.Fatal("an acknowledgement signed after the last direct check-in by the coordinator's clock was ignored")
	}
}

// memberCA is a CA and a signer of member ag-2's check-ins.
func memberCA(t *testing.T) (caDER []byte, sign func(at time.Time, req *wire.CheckinRequest) *wire.SignedCheckin) {
	t.Helper()
	caKey, err := tlsutil.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	caDER, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := tlsutil.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "ag-2"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	return caDER, func(at time.Time, req *wire.CheckinRequest) *wire.SignedCheckin {
		sc, err := wire.SignCheckin(key, der, "ag-2", at, req)
		if err != nil {
			t.Fatal(err)
		}
		return sc
	}
}

// carrierOffice is newGossipOffice with ag-1 able to verify ag-2's
// check-ins, and a signer of those.
func carrierOffice(t *testing.T, ip string) (*gossipOffice, func(at time.Time, req *wire.CheckinRequest) *wire.SignedCheckin) {
	t.Helper()
	o := newGossipOffice(t, ip)
	caDER, sign := memberCA(t)
	if err := o.a.id.SetCAs(caDER); err != nil {
		t.Fatal(err)
	}
	var err error
	if o.a.rollup, err = newRollup(o.a, prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	return o, sign
}

func run(seq uint64) *wire.CheckinRequest {
	return &wire.CheckinRequest{Report: &wire.Report{Revision: 5, Seq: seq}}
}

// The roll-up member keeps the newest check-in of each member, not the
// last one handed to it. Any holder of the office key sees the members'
// signed check-ins go by and can hand over an older one of ag-2 (under
// 10 minutes old) after ag-2's newest: kept, the newest would be dropped
// and ag-2's reported state go back at the coordinator.
func TestRollupMemberKeepsTheNewestCheckinOfEachMember(t *testing.T) {
	o, sign := carrierOffice(t, "127.0.0.77")
	a := o.a
	newest := sign(time.Now().Add(-time.Minute), run(8))
	older := sign(time.Now().Add(-3*time.Minute), run(7))
	o.send(t, &wire.PeerMessage{From: "ag-2", Body: &wire.PeerMessage_RollupReport{RollupReport: newest}})
	testutil.Eventually(t, 5*time.Second, func() bool { return a.rollup.hasPending() }, "ag-2 check-in kept")
	o.send(t, &wire.PeerMessage{From: "ag-evil", Body: &wire.PeerMessage_RollupReport{RollupReport: older}})
	// The second stream is handled once the intruder's Send returns and
	// memberlist reads it: give it a moment.
	time.Sleep(300 * time.Millisecond)
	batch := a.rollup.batch()
	if len(batch) != 1 {
		t.Fatalf("batch of %d", len(batch))
	}
	if got := batch[0]; !proto.Equal(got, newest) {
		var r wire.RollupReport
		proto.Unmarshal(got.GetReport(), &r)
		t.Fatalf("the roll-up member passes on ag-2's check-in signed at %s (run %d), played back after its newest (run 8); want the newest kept",
			time.Unix(r.GetSignedUnix(), 0).Format(time.TimeOnly), r.GetCheckin().GetReport().GetSeq())
	}
	// One of the same second telling of a newer run is newer.
	at := time.Unix(time.Now().Unix(), 0)
	a.rollup.take("ag-2", sign(at, run(9)))
	same := sign(at, run(10))
	a.rollup.take("ag-2", same)
	if batch := a.rollup.batch(); len(batch) != 1 || !proto.Equal(batch[0], same) {
		t.Fatal("a check-in of the same second telling of a newer run did not replace the one held")
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// A member's check-in handed to the roll-up member may be up to 8 MiB
// (what gossip carries). Kept, it would go in every batch and make the
// roll-up member's own check-in exceed wire.MaxMessageSize, every time:
// the roll-up member would never check in again (its own runs, peer
// reports, office news: nothing), yet stay elected. A check-in larger
// than a roll-up member carries is refused (and its sender reported), and
// the roll-up member's check-in goes.
//
// (The reviewer's version waited for the check-in to be kept before
// building the check-in; refused on arrival, it never is: this waits for
// the refusal.)
func TestRollupMemberRefusesACheckinTooLargeToPassOn(t *testing.T) {
	o, sign := carrierOffice(t, "127.0.0.79")
	a := o.a
	// As large as gossip carries, a few bytes to spare.
	signed := func(l int) (*wire.SignedCheckin, int) {
		sc := sign(time.Now(), &wire.CheckinRequest{Version: strings.Repeat("x", l)})
		return sc, proto.Size(&wire.PeerMessage{From: "ag-2", Body: &wire.PeerMessage_RollupReport{RollupReport: sc}})
	}
	l := gossip.MaxMessage - 4096
	_, size := signed(l)
	huge, size := signed(l + gossip.MaxMessage - 16 - size)
	if size > gossip.MaxMessage {
		t.Fatalf("setup: %d bytes", size)
	}
	o.send(t, &wire.PeerMessage{From: "ag-2", Body: &wire.PeerMessage_RollupReport{RollupReport: huge}})
	testutil.Eventually(t, 10*time.Second, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.peerReports) > 0
	}, "the check-in of ag-2 refused and its sender reported")
	if a.rollup.hasPending() {
		t.Fatalf("the %d-byte check-in of ag-2 was kept to pass on", proto.Size(huge))
	}
	// The roll-up member's own check-in, as checkin() builds it.
	a.cfg.Hostname = "pc-1"
	a.addresses = func() []string { return []string{"192.168.10.23"} }
	if err := a.state.SetReport(&wire.Report{Revision: 5, Seq: 1, Items: []*wire.ItemReport{{Id: "vim", Kind: "package", Status: wire.ItemReport_STATUS_COMPLIANT}}}); err != nil {
		t.Fatal(err)
	}
	own := a.checkinRequest(true)
	own.Rollup = a.rollup.batch()
	req := &wire.Request{Body: &wire.Request_Checkin{Checkin: own}}
	if err := wire.WriteMsg(discard{}, req); err != nil {
		t.Fatalf("the roll-up member's check-in cannot be sent (%v)", err)
	}
}

// A batch holds what fits in its room, whatever the first check-in's
// size, and forgets a check-in that grew too old while held: the
// coordinator would refuse it.
func TestRollupBatchFitsItsRoomAndForgetsCheckinsGoneStale(t *testing.T) {
	o, sign := carrierOffice(t, "127.0.0.91")
	r := o.a.rollup
	fresh := sign(time.Now(), &wire.CheckinRequest{Version: strings.Repeat("x", 300<<10)})
	stale := sign(time.Now().Add(-checkinMaxAge-time.Minute), run(1))
	r.mu.Lock()
	r.pending["ag-2"] = heldCheckin{sc: fresh, signed: time.Now()}
	r.pending["ag-3"] = heldCheckin{sc: stale, signed: time.Now().Add(-checkinMaxAge - time.Minute)}
	r.mu.Unlock()
	if b := r.batchWithin(100 << 10); len(b) != 0 {
		t.Fatalf("a batch with room for 100 KiB holds %d check-ins (the first %d bytes)", len(b), proto.Size(b[0]))
	}
	if b := r.batchWithin(1 << 20); len(b) != 1 || b[0] != fresh {
		t.Fatalf("a batch with room for 1 MiB holds %d check-ins, want the fresh one", len(b))
	}
	r.mu.Lock()
	_, kept := r.pending["ag-3"]
	r.mu.Unlock()
	if kept {
		t.Fatal("a check-in older than the coordinator takes is still held")
	}
}
