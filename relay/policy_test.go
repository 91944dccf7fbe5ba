package relay

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/member"
	"github.com/outposthq/outpost/pkg/tlsutil"
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

// enrolledDataDir gives a relay data directory as enrolment leaves it (the
// identity of a relay of office lyon), and the office's policy key.
func enrolledDataDir(t testing.TB) (string, ed25519.PrivateKey) {
	t.Helper()
	ca := newMiniCA(t)
	key, _ := tlsutil.NewKey()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	id := &member.Identity{ID: "relay-1", Office: "lyon", Role: wire.Role_ROLE_RELAY, PolicyKey: pub, GossipKey: make([]byte, 32)}
	if err := id.SetCAs(ca.cert.Raw); err != nil {
		t.Fatal(err)
	}
	id.SetCertificate(tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key})
	if err := id.Save(filepath.Join(dir, "identity")); err != nil {
		t.Fatal(err)
	}
	return dir, priv
}

// A restarted relay applies its saved policy before its cache evicts
// anything, so that objects the policy pins are kept beyond the cap; a
// relay with no saved policy pins nothing and gets under its cap at once;
// one whose saved policy cannot be used evicts nothing until it learns the
// pins from the coordinator (or a fetch needs room).
func TestRestartAppliesTheSavedPolicyBeforeEvicting(t *testing.T) {
	pinned1, pinned2, other := []byte("pinned one"), []byte("pinned two"), []byte("not pinned")
	for _, tt := range []struct {
		name   string
		policy func(t *testing.T, dir string, key ed25519.PrivateKey)
		// what the cache holds after New
		pinned, other bool
	}{
		{name: "saved policy", policy: savePolicy(false), pinned: true, other: false},
		{name: "no saved policy", policy: func(*testing.T, string, ed25519.PrivateKey) {}, pinned: false, other: true},
		{name: "damaged saved policy", policy: savePolicy(true), pinned: true, other: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir, key := enrolledDataDir(t)
			// The pinned objects are the least recently used: a cap applied
			// without the pins would take them first.
			for i, b := range [][]byte{pinned1, pinned2, other} {
				h := hashOf(b)
				p := filepath.Join(dir, "cache", "sha256", h[:2], h)
				if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, b, 0o600); err != nil {
					t.Fatal(err)
				}
				at := time.Now().Add(time.Duration(i-3) * time.Hour)
				if err := os.Chtimes(p, at, at); err != nil {
					t.Fatal(err)
				}
			}
			tt.policy(t, dir, key)
			cfg := testConfig(t)
			cfg.DataDir = dir
			cfg.Coordinator = "127.0.0.1:1" // never reached: New contacts nothing
			cfg.CacheMaxBytes = int64(len(other)) + 1
			r, err := New(cfg, logging.Discard(), prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			defer r.unlock()
			got := map[string]bool{"pinned": r.cache.Has(hashOf(pinned1)) && r.cache.Has(hashOf(pinned2)), "other": r.cache.Has(hashOf(other))}
			if got["pinned"] != tt.pinned || got["other"] != tt.other {
				t.Errorf("after New: pinned objects kept %v, the other kept %v; want %v and %v", got["pinned"], got["other"], tt.pinned, tt.other)
			}
		})
	}
}

// savePolicy writes a signed policy of office lyon naming the two pinned
// objects of TestRestartAppliesTheSavedPolicyBeforeEvicting, damaged or not.
func savePolicy(damaged bool) func(t *testing.T, dir string, key ed25519.PrivateKey) {
	return func(t *testing.T, dir string, key ed25519.PrivateKey) {
		pol := &wire.Policy{Office: "lyon", Revision: 2}
		for _, b := range [][]byte{[]byte("pinned one"), []byte("pinned two")} {
			pol.Items = append(pol.Items, &wire.Item{Id: string(b), Kind: "package", Artifact: &wire.Artifact{Sha256: hashOf(b), Size: int64(len(b))}})
		}
		sp, err := wire.SignPolicy(key, pol)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := proto.Marshal(sp)
		if err != nil {
			t.Fatal(err)
		}
		if damaged {
			raw[len(raw)/2] ^= 0xff
		}
		if err := os.WriteFile(filepath.Join(dir, policyFile), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
