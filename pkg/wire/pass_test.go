package wire

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

func signedPass(t testing.TB, priv ed25519.PrivateKey, p *MemberPass) []byte {
	t.Helper()
	sp, err := SignPass(priv, p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := EncodePass(sp)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPassRoundTripAndRefusals(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	gk, _, _ := ed25519.GenerateKey(nil)
	now := time.Now()
	good := &MemberPass{MemberId: "ag-0123456789abcdef", Role: Role_ROLE_RELAY, GossipKey: gk, NotAfterUnix: PassExpiry(now).Unix()}
	b := signedPass(t, priv, good)
	if len(b) > MaxPass-40 {
		t.Errorf("a pass of %d bytes leaves too little room under MaxPass %d", len(b), MaxPass)
	}
	p, err := VerifyPass(pub, b, now)
	if err != nil || !proto.Equal(p, good) {
		t.Fatalf("got %v, %v", p, err)
	}
	if exp := PassExpiry(now); exp.Sub(now) > PassLifetime || exp.Sub(now) < PassLifetime-24*time.Hour || exp.Hour() != 0 {
		t.Errorf("expiry %v for a pass issued at %v", exp, now)
	}

	tampered := bytes.Clone(b)
	tampered[len(tampered)-1] ^= 1
	for _, tc := range []struct {
		name string
		key  ed25519.PublicKey
		b    []byte
		at   time.Time
		want string
	}{
		{"another key's", pub, signedPass(t, other, good), now, "does not verify"},
		{"tampered", pub, tampered, now, "does not verify"},
		{"expired past the grace", pub, b, PassExpiry(now).Add(PassGrace + time.Second), "expired"},
		{"oversized", pub, make([]byte, MaxPass+1), now, "at most"},
		{"garbage", pub, []byte{0xff, 0xff}, now, "decode"},
		{"no pinned key", nil, b, now, "pinned key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := VerifyPass(tc.key, tc.b, tc.at); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := VerifyPass(pub, b, PassExpiry(now).Add(PassGrace-time.Second)); err != nil {
		t.Errorf("within the grace: %v", err)
	}
	if _, err := VerifyPass(pub, b, PassExpiry(now).Add(PassGrace+time.Second)); !errors.Is(err, ErrPassExpired) {
		t.Errorf("expired: %v", err)
	}
	// The coordinator signs nothing malformed.
	for _, bad := range []*MemberPass{
		{MemberId: "Ag 1", Role: Role_ROLE_AGENT, GossipKey: gk, NotAfterUnix: 1},
		{MemberId: "ag-1", Role: Role_ROLE_UNSPECIFIED, GossipKey: gk, NotAfterUnix: 1},
		{MemberId: "ag-1", Role: Role_ROLE_AGENT, GossipKey: gk[:31], NotAfterUnix: 1},
		{MemberId: "ag-1", Role: Role_ROLE_AGENT, GossipKey: gk},
	} {
		if _, err := SignPass(priv, bad); err == nil {
			t.Errorf("signed %v", bad)
		}
	}
}

func FuzzVerifyPass(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	gk, _, _ := ed25519.GenerateKey(nil)
	now := time.Now()
	good := signedPass(f, priv, &MemberPass{MemberId: "ag-1", Role: Role_ROLE_AGENT, GossipKey: gk, NotAfterUnix: PassExpiry(now).Unix()})
	f.Add(good)
	f.Add([]byte{})
	f.Add(good[:10])
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := VerifyPass(pub, b, now)
		if err != nil {
			return
		}
		// Whatever verifies carries the one pass signed, and is well formed.
		if p.GetMemberId() != "ag-1" || !bytes.Equal(p.GetGossipKey(), gk) || checkPass(p) != nil {
			t.Fatalf("verified %v", p)
		}
	})
}
