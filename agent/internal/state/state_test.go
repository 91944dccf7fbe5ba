package state

import (
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/outposthq/outpost/pkg/wire"
)

func TestAcceptOnlyNewerSignedPolicyOfOwnOffice(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	s, err := Open(dir, pub, "berlin")
	if err != nil {
		t.Fatal(err)
	}
	sign := func(k ed25519.PrivateKey, office string, rev uint64) *wire.SignedPolicy {
		sp, err := wire.SignPolicy(k, &wire.Policy{Office: office, Revision: rev})
		if err != nil {
			t.Fatal(err)
		}
		return sp
	}
	if _, err := s.Accept(sign(priv, "berlin", 2)); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		sp    *wire.SignedPolicy
		stale bool
	}{
		"older":        {sign(priv, "berlin", 1), true},
		"same":         {sign(priv, "berlin", 2), true},
		"other office": {sign(priv, "paris", 9), false},
		"forged":       {sign(other, "berlin", 9), false},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := s.Accept(tc.sp)
			if err == nil {
				t.Fatal("accepted")
			}
			if errors.Is(err, ErrStale) != tc.stale {
				t.Fatalf("stale=%v for %v", !tc.stale, err)
			}
		})
	}
	// A restart keeps the highest revision and still refuses older ones.
	s2, err := Open(dir, pub, "berlin")
	if err != nil {
		t.Fatal(err)
	}
	if s2.Revision() != 2 {
		t.Fatalf("after restart: revision %d, want 2", s2.Revision())
	}
	if _, err := s2.Accept(sign(priv, "berlin", 1)); !errors.Is(err, ErrStale) {
		t.Fatalf("older after restart: %v", err)
	}
	// A policy file signed by someone else is not loaded.
	if _, err := Open(dir, ed25519.PublicKey(other.Public().(ed25519.PublicKey)), "berlin"); err == nil {
		t.Fatal("policy.pb accepted under another key")
	}
}
