package gossip

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

var (
	hereIP   = net.ParseIP("10.1.2.3")
	herePort = uint16(7946)
)

// announce is what a member called name, holding key and pass, announces
// at hereIP:herePort, as its first announcement.
func announce(key ed25519.PrivateKey, name string, pass []byte, m Meta) []byte {
	return announceAt(1, key, name, pass, m)
}

// announceAt is announce with the sequence seq.
func announceAt(seq uint64, key ed25519.PrivateKey, name string, pass []byte, m Meta) []byte {
	return signMeta(key, name, hereIP, herePort, seq, m, pass)
}

func TestAnnouncementFitsMemberlistsLimit(t *testing.T) {
	// The longest member id and every field set.
	name := strings.Repeat("a", wire.MaxMemberID)
	key, pass := testutil.MemberPass(passPriv, name, wire.Role_ROLE_RELAY)
	m := Meta{ContentPort: 65535, Rollup: true, Holdings: NewHoldings([]string{shaOf(1)})}
	b := announce(key, name, pass, m)
	if len(b) > memberlist.MetaMaxSize {
		t.Fatalf("announcement of %d bytes, memberlist takes %d", len(b), memberlist.MetaMaxSize)
	}
	got, err := newVerifier(passKey).verify(name, hereIP, herePort, b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Role != "relay" || got.ContentPort != 65535 || !got.Rollup || !bytes.Equal(got.Holdings, m.Holdings) {
		t.Fatalf("read back %+v", got)
	}
}

func TestAnnouncementsThatDoNotVerify(t *testing.T) {
	key, pass := testutil.MemberPass(passPriv, "ag-1", wire.Role_ROLE_AGENT)
	otherKey, otherPass := testutil.MemberPass(passPriv, "ag-2", wire.Role_ROLE_AGENT)
	_, foreign, _ := ed25519.GenerateKey(nil)
	forgedKey, forgedPass := testutil.MemberPass(foreign, "ag-1", wire.Role_ROLE_RELAY)
	good := announce(key, "ag-1", pass, Meta{ContentPort: 7000})
	tampered := bytes.Clone(good)
	tampered[3]++ // another content port
	for _, tc := range []struct {
		name string
		b    []byte
		ip   net.IP
		want string
	}{
		{"no pass: an office key holder", announce(key, "ag-1", nil, Meta{}), hereIP, "no member pass"},
		{"another member's pass", announce(otherKey, "ag-1", otherPass, Meta{}), hereIP, "announces the pass of ag-2"},
		{"another member's announcement under this name", announce(otherKey, "ag-2", otherPass, Meta{}), hereIP, "pass of ag-2"},
		{"the right pass, signed with another key", announce(otherKey, "ag-1", pass, Meta{}), hereIP, "not signed"},
		{"a pass the coordinator did not sign", announce(forgedKey, "ag-1", forgedPass, Meta{}), hereIP, "does not verify"},
		{"a genuine announcement moved to another address", good, net.ParseIP("10.9.9.9"), "not signed"},
		{"a genuine announcement changed", tampered, hereIP, "not signed"},
		{"cut short", good[:len(good)-5], hereIP, "length"},
		{"empty", nil, hereIP, "too short"},
		{"an older release's", append([]byte(`{"r":"relay"}`), make([]byte, 80)...), hereIP, "another release"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newVerifier(passKey).verify("ag-1", tc.ip, herePort, tc.b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if _, err := newVerifier(passKey).verify("ag-1", hereIP, herePort, good); err != nil {
		t.Fatalf("the genuine one: %v", err)
	}
}

func TestExpiredPassRefusedEvenOnceVerified(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	sp, err := wire.SignPass(passPriv, &wire.MemberPass{MemberId: "ag-1", Role: wire.Role_ROLE_AGENT, GossipKey: pub,
		NotAfterUnix: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	pass, _ := wire.EncodePass(sp)
	b := announce(key, "ag-1", pass, Meta{})
	v := newVerifier(passKey)
	if _, err := v.verify("ag-1", hereIP, herePort, b); err != nil {
		t.Fatal(err)
	}
	// A day's grace for clocks, then refused, remembered or not.
	v.now = func() time.Time { return time.Now().Add(time.Hour + wire.PassGrace + time.Minute) }
	if _, err := v.verify("ag-1", hereIP, herePort, b); !errors.Is(err, wire.ErrPassExpired) {
		t.Fatalf("remembered: %v", err)
	}
	if _, err := newVerifierAt(v.now).verify("ag-1", hereIP, herePort, b); !errors.Is(err, wire.ErrPassExpired) {
		t.Fatalf("first seen: %v", err)
	}
}

func newVerifierAt(now func() time.Time) *verifier {
	v := newVerifier(passKey)
	v.now = now
	return v
}

func TestRoleIsThePasss(t *testing.T) {
	key, pass := testutil.MemberPass(passPriv, "ag-1", wire.Role_ROLE_AGENT)
	got, err := newVerifier(passKey).verify("ag-1", hereIP, herePort, announce(key, "ag-1", pass, Meta{Role: "relay"}))
	if err != nil || got.Role != "agent" {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	key, pass := testutil.MemberPass(passPriv, "ag-1", wire.Role_ROLE_AGENT)
	f.Add(announce(key, "ag-1", pass, Meta{ContentPort: 7000, Rollup: true, Holdings: NewHoldings([]string{shaOf(1)})}))
	f.Add(announce(key, "ag-1", nil, Meta{}))
	f.Add([]byte(`{"r":"relay","v":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeMeta(b)
		if err == nil {
			if len(r.meta.Holdings) != 0 && len(r.meta.Holdings) != HoldingsBytes || len(r.sig) != ed25519.SignatureSize ||
				len(r.body)+len(r.sig) != len(b) || r.meta.ContentPort < 0 || r.meta.ContentPort > 65535 {
				t.Fatalf("took apart as %+v", r)
			}
			r.meta.Holdings.Has(shaOf(1)) // never panics
		}
		m, err := newVerifier(passKey).verify("ag-1", hereIP, herePort, b)
		if err == nil && !bytes.Equal(b, announceAt(r.seq, key, "ag-1", pass, Meta{ContentPort: m.ContentPort, Rollup: m.Rollup, Holdings: m.Holdings})) {
			// Ed25519 signatures are deterministic: anything else that
			// verifies is a forgery.
			t.Fatalf("verified an announcement the member did not make: %x", b)
		}
	})
}
