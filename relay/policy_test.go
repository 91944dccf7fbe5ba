package relay

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/outposthq/outpost/pkg/wire"
)

func TestOfficePolicy(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	a, b := hashOf([]byte("a")), hashOf([]byte("b"))
	pol := func(office string, rev uint64, hashes ...string) *wire.Policy {
		p := &wire.Policy{Office: office, Revision: rev}
		for _, h := range hashes {
			p.Items = append(p.Items, &wire.Item{Id: h[:8], Kind: "package", Artifact: &wire.Artifact{Sha256: h}})
		}
		p.Items = append(p.Items, &wire.Item{Id: "no-artifact", Kind: "registry"})
		return p
	}
	sign := func(k ed25519.PrivateKey, p *wire.Policy) *wire.SignedPolicy {
		sp, err := wire.SignPolicy(k, p)
		if err != nil {
			t.Fatal(err)
		}
		return sp
	}

	dir := t.TempDir()
	type applied struct {
		rev    uint64
		hashes []string
	}
	var got []applied
	p := &officePolicy{key: pub, office: "lyon", dir: dir, apply: func(rev uint64, h []string, _ map[string]int64) { got = append(got, applied{rev, h}) }}

	steps := []struct {
		name    string
		sp      *wire.SignedPolicy
		wantErr string
		applied int // how many applications so far
	}{
		{"first", sign(priv, pol("lyon", 2, b, a, a)), "", 1},
		{"forged", sign(otherPriv, pol("lyon", 3, a)), "signature", 1},
		{"another office", sign(priv, pol("paris", 3, a)), "office", 1},
		{"older", sign(priv, pol("lyon", 1, a)), "", 1},
		{"same", sign(priv, pol("lyon", 2)), "", 1},
		{"newer", sign(priv, pol("lyon", 3, a)), "", 2},
	}
	for _, st := range steps {
		err := p.accept(st.sp, true)
		if (err == nil) != (st.wantErr == "") || (err != nil && !strings.Contains(err.Error(), st.wantErr)) {
			t.Errorf("%s: err %v, want %q", st.name, err, st.wantErr)
		}
		if len(got) != st.applied {
			t.Fatalf("%s: %d applications, want %d", st.name, len(got), st.applied)
		}
	}
	if got[0].rev != 2 || strings.Join(got[0].hashes, ",") != strings.Join([]string{min(a, b), max(a, b)}, ",") {
		t.Errorf("first application %+v: want revision 2 with a and b once each, sorted", got[0])
	}

	// A restart takes the saved policy; a tampered file is refused.
	var again []string
	p2 := &officePolicy{key: pub, office: "lyon", dir: dir, apply: func(_ uint64, h []string, _ map[string]int64) { again = h }}
	if err := p2.load(); err != nil || p2.revision != 3 || len(again) != 1 || again[0] != a {
		t.Fatalf("load: err %v revision %d hashes %v", err, p2.revision, again)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, policyFile))
	raw[len(raw)/2] ^= 0xff
	os.WriteFile(filepath.Join(dir, policyFile), raw, 0o600)
	p3 := &officePolicy{key: pub, office: "lyon", dir: dir, apply: func(uint64, []string, map[string]int64) { t.Error("tampered policy applied") }}
	if err := p3.load(); err == nil {
		t.Error("tampered saved policy loaded")
	}
}

// A relay pins what its office's agents with a policy of their own need
// too, and takes no policy meant for one agent.
func TestOfficePolicyWithVariants(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	a, b, c := hashOf([]byte("a")), hashOf([]byte("b")), hashOf([]byte("c"))
	var got []string
	p := &officePolicy{key: pub, office: "lyon", dir: t.TempDir(), apply: func(_ uint64, h []string, _ map[string]int64) { got = h }}
	sign := func(pol *wire.Policy) *wire.SignedPolicy {
		sp, err := wire.SignPolicy(priv, pol)
		if err != nil {
			t.Fatal(err)
		}
		return sp
	}
	variant := &wire.Policy{Office: "lyon", Revision: 2, Agent: "ag-1", Items: []*wire.Item{{Id: "x", Artifact: &wire.Artifact{Sha256: c}}}}
	if err := p.accept(sign(variant), true); err == nil || !strings.Contains(err.Error(), "for agent") {
		t.Fatalf("a variant: %v", err)
	}
	wide := &wire.Policy{Office: "lyon", Revision: 2, VariantAgents: []string{"ag-1"},
		Items:            []*wire.Item{{Id: "x", Artifact: &wire.Artifact{Sha256: b}}},
		VariantArtifacts: []*wire.Artifact{{Sha256: c}, {Sha256: a}, {Sha256: b}}}
	if err := p.accept(sign(wide), true); err != nil {
		t.Fatal(err)
	}
	want := []string{a, b, c}
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("pinned %v, want %v", got, want)
	}
}
