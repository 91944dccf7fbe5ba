package agent

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/gossip"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// captureRollup hands the rolled-up check-ins a member receives to the test.
type captureRollup struct{ got chan *wire.SignedCheckin }

func (captureRollup) PeerChanged(gossip.Peer) {}
func (c captureRollup) Message(b []byte) {
	var m wire.PeerMessage
	if proto.Unmarshal(b, &m) == nil && m.GetRollupReport() != nil {
		select {
		case c.got <- m.GetRollupReport():
		default:
		}
	}
}

// Clocks of computers that nobody watches drift: a machine without a
// working time service gains or loses seconds a day, a minute within a
// month or two. A member learns the coordinator's time at every direct
// check-in (rollup.clock: ServerUnix), and uses it for acknowledgements,
// but it signs the check-ins it hands to its roll-up member with its own
// clock. Both the carrier (carriable) and the coordinator (rolledUp)
// refuse a check-in signed more than a minute in their future, and the
// carrier also reports the member as misbehaving: once such a member's
// clock is a minute and a half fast, none of its rolled-up check-ins is
// ever kept, every interval costs a refusal logged at Warn on the carrier
// and the coordinator and a peer report, and the member falls back to a
// direct check-in every few intervals — though it knew the difference.
// It signs in the coordinator's time now.
func TestRolledUpCheckinIsSignedInTheCoordinatorsTime(t *testing.T) {
	o := newGossipOffice(t, "127.0.0.121")
	a := o.a

	caKey, _ := tlsutil.NewKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := tlsutil.NewKey()
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "ag-1"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.id.SetCAs(caDER); err != nil {
		t.Fatal(err)
	}
	a.addresses = func() []string { return []string{"10.1.0.7"} }
	a.id.SetCertificate(tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key})

	carrier := captureRollup{got: make(chan *wire.SignedCheckin, 1)}
	o.join(t, "ag-0", "127.0.0.123", carrier)

	// ag-1's clock is 90 s fast; its last direct check-in said so.
	coordinatorNow := func() time.Time { return time.Now().Add(-90 * time.Second) }
	a.rollup.clock(coordinatorNow().Unix())
	a.rollup.checkedIn(false)

	if err := a.rollup.send("ag-0", false); err != nil {
		t.Fatal(err)
	}
	var sc *wire.SignedCheckin
	select {
	case sc = <-carrier.got:
	case <-time.After(10 * time.Second):
		t.Fatal("the roll-up member got no check-in")
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	rep, err := wire.VerifyCheckin(sc, roots, coordinatorNow())
	if err != nil {
		t.Fatal(err)
	}
	ahead := time.Unix(rep.GetSignedUnix(), 0).Sub(coordinatorNow())
	// carriable is the coordinator's rule too (quicsrv.rolledUp: more
	// than a minute in its future is refused as stale).
	if err := carriable(rep, coordinatorNow()); err != nil {
		t.Fatalf("the check-in is signed %v ahead of the coordinator's clock, which the member measured at its last direct check-in; "+
			"the coordinator and a carrier whose clock is right refuse it (%v), every interval", ahead.Round(time.Second), err)
	}
}
