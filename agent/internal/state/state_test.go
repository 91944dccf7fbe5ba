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
	s, err := Open(dir, pub)
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
	if _, err := s.Accept(sign(priv, "berlin", 2), "berlin"); err != nil {
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
			_, err := s.Accept(tc.sp, "berlin")
			if err == nil {
				t.Fatal("accepted")
			}
			if errors.Is(err, ErrStale) != tc.stale {
				t.Fatalf("stale=%v for %v", !tc.stale, err)
			}
		})
	}
	// A restart keeps the highest revision and still refuses older ones.
	s2, err := Open(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Revision() != 2 {
		t.Fatalf("after restart: revision %d, want 2", s2.Revision())
	}
	if _, err := s2.Accept(sign(priv, "berlin", 1), "berlin"); !errors.Is(err, ErrStale) {
		t.Fatalf("older after restart: %v", err)
	}
	// A policy file signed by someone else is not loaded.
	if _, err := Open(dir, ed25519.PublicKey(other.Public().(ed25519.PublicKey))); err == nil {
		t.Fatal("policy.pb accepted under another key")
	}
}

func TestMovingBetweenOfficesKeepsEachHighWaterMark(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	s, err := Open(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(office string, rev uint64) *wire.SignedPolicy {
		sp, _ := wire.SignPolicy(priv, &wire.Policy{Office: office, Revision: rev})
		return sp
	}
	steps := []struct {
		office string
		rev    uint64
		ok     bool
	}{
		{"berlin", 5, true},
		{"paris", 2, true},   // another office's counter is its own
		{"berlin", 4, false}, // back in berlin: older than what berlin gave
		{"berlin", 5, true},  // the same document again, after paris
		{"berlin", 5, false}, // but not twice in a row
		{"paris", 1, false},
	}
	for i, st := range steps {
		_, err := s.Accept(sign(st.office, st.rev), st.office)
		if (err == nil) != st.ok {
			t.Fatalf("step %d (%s r%d): err %v, want ok=%v", i, st.office, st.rev, err, st.ok)
		}
	}
	s2, err := Open(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Accept(sign("paris", 1), "paris"); !errors.Is(err, ErrStale) {
		t.Fatalf("after restart an older paris revision: %v", err)
	}
}
