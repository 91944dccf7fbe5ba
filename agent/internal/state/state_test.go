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
	if _, err := s.Accept(sign(priv, "berlin", 2), "berlin", self); err != nil {
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
			_, err := s.Accept(tc.sp, "berlin", self)
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
	if _, err := s2.Accept(sign(priv, "berlin", 1), "berlin", self); !errors.Is(err, ErrStale) {
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
		_, err := s.Accept(sign(st.office, st.rev), st.office, self)
		if (err == nil) != st.ok {
			t.Fatalf("step %d (%s r%d): err %v, want ok=%v", i, st.office, st.rev, err, st.ok)
		}
	}
	s2, err := Open(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Accept(sign("paris", 1), "paris", self); !errors.Is(err, ErrStale) {
		t.Fatalf("after restart an older paris revision: %v", err)
	}
}

const self = "ag-self"

func TestAcceptOnlyOwnVariant(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	s, err := Open(t.TempDir(), pub)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(p *wire.Policy) *wire.SignedPolicy {
		p.Office = "berlin"
		sp, err := wire.SignPolicy(priv, p)
		if err != nil {
			t.Fatal(err)
		}
		return sp
	}
	steps := []struct {
		name   string
		p      *wire.Policy
		accept bool
		own    bool // refused with ErrOwnPolicy
		stale  bool
	}{
		{name: "office-wide, no variants", p: &wire.Policy{Revision: 1}, accept: true},
		{name: "another agent's variant", p: &wire.Policy{Revision: 2, Agent: "ag-other"}},
		{name: "office-wide naming another agent's variant", p: &wire.Policy{Revision: 2, VariantAgents: []string{"ag-other"}}, accept: true},
		{name: "office-wide naming this agent's variant", p: &wire.Policy{Revision: 3, VariantAgents: []string{"ag-other", self}}, own: true},
		{name: "this agent's variant", p: &wire.Policy{Revision: 3, Agent: self}, accept: true},
		{name: "the office-wide one of the same revision after it", p: &wire.Policy{Revision: 3}, stale: true},
		{name: "an older variant of its own", p: &wire.Policy{Revision: 2, Agent: self}, stale: true},
		{name: "another agent's newer variant", p: &wire.Policy{Revision: 9, Agent: "ag-other"}},
		{name: "office-wide again when it has none of its own", p: &wire.Policy{Revision: 4, VariantAgents: []string{"ag-other"}}, accept: true},
	}
	for _, st := range steps {
		_, err := s.Accept(sign(st.p), "berlin", self)
		switch {
		case st.accept && err != nil:
			t.Fatalf("%s: refused: %v", st.name, err)
		case !st.accept && err == nil:
			t.Fatalf("%s: accepted", st.name)
		case errors.Is(err, ErrOwnPolicy) != st.own:
			t.Fatalf("%s: own=%v: %v", st.name, !st.own, err)
		case errors.Is(err, ErrStale) != st.stale:
			t.Fatalf("%s: stale=%v: %v", st.name, !st.stale, err)
		}
		var oe *OwnPolicyError
		if st.own && (!errors.As(err, &oe) || oe.Revision != st.p.Revision) {
			t.Fatalf("%s: %v, want the revision to fetch", st.name, err)
		}
	}
	if p := s.Policy(); p.GetRevision() != 4 || p.GetAgent() != "" || s.Shareable() == nil {
		t.Fatalf("held %v", p)
	}
	if _, err := s.Accept(sign(&wire.Policy{Revision: 5, Agent: self}), "berlin", self); err != nil {
		t.Fatal(err)
	}
	if s.Shareable() != nil {
		t.Fatal("this agent's own policy is shareable with peers")
	}
}
