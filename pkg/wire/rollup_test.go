package wire

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// member issues a member certificate as the coordinator's CA does.
func (ca *testCA) member(t testing.TB, id string) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: id},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func TestSignedCheckin(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	keyA, certA := ca.member(t, "ag-a")
	_, certB := ca.member(t, "ag-b")
	keyX, certX := other.member(t, "ag-a")
	req := &CheckinRequest{Hostname: "pc-a", Report: &Report{Seq: 7}}
	now := time.Now()
	sign := func(key *ecdsa.PrivateKey, cert []byte, id string) *SignedCheckin {
		sc, err := SignCheckin(key, cert, id, now, req)
		if err != nil {
			t.Fatal(err)
		}
		return sc
	}
	tampered := sign(keyA, certA, "ag-a")
	tampered.Report = append([]byte(nil), tampered.Report...)
	tampered.Report[len(tampered.Report)-1] ^= 1
	for _, tc := range []struct {
		name string
		sc   *SignedCheckin
		ok   bool
	}{
		{"genuine", sign(keyA, certA, "ag-a"), true},
		{"for another member, own certificate", sign(keyA, certA, "ag-b"), false},
		{"with another member's certificate", sign(keyA, certB, "ag-b"), false},
		{"certificate of another CA", sign(keyX, certX, "ag-a"), false},
		{"tampered", tampered, false},
		{"empty", &SignedCheckin{}, false},
	} {
		// Each case alone, and with a verifier that has verified every
		// certificate of the cases before (genuine ones remembered).
		warm := NewCheckinVerifier(func() *x509.CertPool { return ca.pool }, 100)
		for _, sc := range []*SignedCheckin{sign(keyA, certA, "ag-a"), sign(keyA, certB, "ag-b"), sign(keyX, certX, "ag-a")} {
			warm.Verify(sc, now)
		}
		for name, verify := range map[string]func(*SignedCheckin) (*RollupReport, error){
			"alone":      func(sc *SignedCheckin) (*RollupReport, error) { return VerifyCheckin(sc, ca.pool, now) },
			"remembered": func(sc *SignedCheckin) (*RollupReport, error) { return warm.Verify(sc, now) },
		} {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				rep, err := verify(tc.sc)
				if tc.ok {
					if err != nil || rep.GetMemberId() != "ag-a" || rep.GetCheckin().GetReport().GetSeq() != 7 || rep.GetSignedUnix() != now.Unix() {
						t.Fatalf("genuine check-in: %v, %v", rep, err)
					}
					return
				}
				if !errors.Is(err, ErrBadCheckin) {
					t.Fatalf("want ErrBadCheckin, got %v (%v)", err, rep)
				}
			})
		}
	}
	// A remembered certificate counts only within its validity.
	warm := NewCheckinVerifier(func() *x509.CertPool { return ca.pool }, 100)
	if _, err := warm.Verify(sign(keyA, certA, "ag-a"), now); err != nil {
		t.Fatal(err)
	}
	if _, err := warm.Verify(sign(keyA, certA, "ag-a"), now.Add(2*time.Hour)); !errors.Is(err, ErrBadCheckin) {
		t.Fatalf("an expired remembered certificate: got %v, want ErrBadCheckin", err)
	}
}

func TestSignedRollupAck(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	otherPub, _, _ := ed25519.GenerateKey(nil)
	s, err := SignRollupAck(priv, &RollupAck{MemberId: "ag-a", AckedSeq: 9, CheckinDirectly: true})
	if err != nil {
		t.Fatal(err)
	}
	if a, err := VerifyRollupAck(pub, s); err != nil || a.GetAckedSeq() != 9 || !a.GetCheckinDirectly() || s.GetMemberId() != "ag-a" {
		t.Fatalf("ack: %v, %v", a, err)
	}
	if _, err := VerifyRollupAck(otherPub, s); err == nil {
		t.Fatal("an ack verified with another key")
	}
	forged := proto.Clone(s).(*SignedRollupAck)
	forged.Ack, _ = proto.Marshal(&RollupAck{MemberId: "ag-a", AckedSeq: 1000})
	if _, err := VerifyRollupAck(pub, forged); err == nil {
		t.Fatal("a changed ack verified")
	}
	// A policy signature is no ack signature, and the other way round.
	sp, _ := SignPolicy(priv, &Policy{Office: "x", Revision: 1})
	if _, err := VerifyRollupAck(pub, &SignedRollupAck{Ack: sp.GetPolicy(), Signature: sp.GetSignature()}); err == nil {
		t.Fatal("a policy signature verified as an ack")
	}
}

func TestOfficeDigestIgnoresSeedsAndRevision(t *testing.T) {
	a := &OfficeInfo{Name: "x", CheckinIntervalSeconds: 120, GossipSeeds: []string{"1.2.3.4:7946"}, Revision: 3, GossipKey: []byte("k")}
	b := proto.Clone(a).(*OfficeInfo)
	b.GossipSeeds, b.Revision = nil, 9
	if string(OfficeDigest(a)) != string(OfficeDigest(b)) {
		t.Fatal("seeds or revision changed the digest")
	}
	b.GossipKey = []byte("l")
	if string(OfficeDigest(a)) == string(OfficeDigest(b)) {
		t.Fatal("a new gossip key did not change the digest")
	}
}

func FuzzVerifyCheckin(f *testing.F) {
	ca := newTestCA(f)
	key, cert := ca.member(f, "ag-a")
	sc, err := SignCheckin(key, cert, "ag-a", time.Now(), &CheckinRequest{Hostname: "pc"})
	if err != nil {
		f.Fatal(err)
	}
	b, _ := proto.Marshal(sc)
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var sc SignedCheckin
		if proto.Unmarshal(b, &sc) != nil {
			return
		}
		rep, err := VerifyCheckin(&sc, ca.pool, time.Now())
		if err == nil && rep.GetMemberId() != "ag-a" {
			t.Fatalf("verified a check-in for %q", rep.GetMemberId())
		}
	})
}
