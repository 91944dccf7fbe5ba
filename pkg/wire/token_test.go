package wire

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

func TestTokenRoundTripAndRefusals(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	otherPub, otherPriv, _ := ed25519.GenerateKey(nil)
	keys := map[string]ed25519.PublicKey{KeyID(pub): pub}
	now := time.Unix(1_800_000_000, 0)
	claims := &AccessToken{Issuer: "sha256:aa", User: "tina", Groups: []string{"berlin"}, IssuedUnixMs: now.UnixMilli(), ExpiresUnixMs: now.Add(time.Minute).UnixMilli()}
	good, err := SignToken(priv, claims)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := SignToken(otherPriv, claims)
	// A token whose key id claims the trusted key but is signed by another.
	swapped := map[string]ed25519.PublicKey{KeyID(otherPub): pub}
	for _, tc := range []struct {
		name  string
		token string
		keys  map[string]ed25519.PublicKey
		at    time.Time
		want  error
	}{
		{"good", good, keys, now, nil},
		{"expired", good, keys, now.Add(time.Minute), ErrTokenExpired},
		{"unknown key", other, keys, now, ErrTokenUnknownKey},
		{"wrong signature", other, swapped, now, ErrTokenSignature},
		{"no prefix", good[len(TokenPrefix):], keys, now, ErrTokenMalformed},
		{"truncated", good[:len(good)-10], keys, now, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := VerifyToken(tc.token, tc.keys, tc.at)
			if tc.name == "good" {
				if err != nil || got.GetUser() != "tina" || got.GetGroups()[0] != "berlin" {
					t.Fatalf("%v %v", got, err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
	l := &RevocationList{Revocations: []*Revocation{{User: "tina", NotBeforeUnixMs: now.UnixMilli() + 1}}}
	if !l.Revoked(claims) {
		t.Fatal("a token issued before not-before is not revoked")
	}
	l.Revocations[0].NotBeforeUnixMs = now.UnixMilli()
	if l.Revoked(claims) {
		t.Fatal("a token issued at not-before is revoked")
	}
}

func FuzzVerifyToken(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	keys := map[string]ed25519.PublicKey{KeyID(pub): pub}
	good, _ := SignToken(priv, &AccessToken{User: "tina", ExpiresUnixMs: 1 << 62})
	f.Add(good)
	f.Add(TokenPrefix)
	f.Add(TokenPrefix + "AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		at, err := VerifyToken(s, keys, time.Unix(0, 0))
		if err == nil && at.GetUser() == "" {
			t.Fatal("accepted a token without a user")
		}
	})
}

func TestRevocationsSignedAndRefused(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	keys := map[string]ed25519.PublicKey{KeyID(pub): pub}
	l := &RevocationList{IssuedUnixMs: 42, Revocations: []*Revocation{{User: "tom", Disabled: true}}}
	s, err := SignRevocations(priv, l)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyRevocations(s, keys)
	if err != nil || got.GetIssuedUnixMs() != 42 || got.GetRevocations()[0].GetUser() != "tom" {
		t.Fatalf("%v %v", got, err)
	}
	tampered := proto.Clone(s).(*SignedRevocations)
	tampered.List = append([]byte(nil), s.List...)
	tampered.List[len(tampered.List)-1] ^= 1
	foreign, _ := SignRevocations(other, l)
	relabelled := proto.Clone(foreign).(*SignedRevocations)
	relabelled.KeyId = s.KeyId
	noTime, _ := SignRevocations(priv, &RevocationList{})
	for name, bad := range map[string]*SignedRevocations{"tampered": tampered, "other key": foreign,
		"other key under a trusted id": relabelled, "no issue time": noTime, "empty": {}, "nil": nil} {
		if _, err := VerifyRevocations(bad, keys); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzVerifyRevocations(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	keys := map[string]ed25519.PublicKey{KeyID(pub): pub}
	good, _ := SignRevocations(priv, &RevocationList{IssuedUnixMs: 1, Revocations: []*Revocation{{User: "tom"}}})
	b, _ := proto.Marshal(good)
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var s SignedRevocations
		if proto.Unmarshal(raw, &s) != nil {
			return
		}
		if l, err := VerifyRevocations(&s, keys); err == nil && l.GetIssuedUnixMs() <= 0 {
			t.Fatal("accepted a list without an issue time")
		}
	})
}
