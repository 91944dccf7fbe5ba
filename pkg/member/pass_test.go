package member

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/wire"
)

// oldIdentity saves an identity as a release before member passes did:
// no gossip key, no pass.
func oldIdentity(t *testing.T, dir string, policy ed25519.PublicKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ag-1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	id := &Identity{ID: "ag-1", Office: "hq", Role: wire.Role_ROLE_AGENT, cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		PolicyKey: policy, GossipKey: make([]byte, 32)}
	if err := id.SetCAs(der); err != nil {
		t.Fatal(err)
	}
	if err := id.Save(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, gossipKeyFile)); !os.IsNotExist(err) {
		t.Fatalf("an old identity has a gossip key: %v", err)
	}
}

func issue(t *testing.T, priv ed25519.PrivateKey, id string, role wire.Role, key ed25519.PublicKey, end time.Time) *wire.SignedMemberPass {
	t.Helper()
	sp, err := wire.SignPass(priv, &wire.MemberPass{MemberId: id, Role: role, GossipKey: key, NotAfterUnix: end.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// A member enrolled before passes makes its gossip key when it loads its
// identity, asks for a pass, keeps the one it is given across a restart,
// and asks again as its end nears.
func TestIdentityFromBeforePassesGetsOne(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	oldIdentity(t, dir, pub)
	id, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if len(id.GossipPublic()) != ed25519.PublicKeySize || !id.NeedsPass(now) {
		t.Fatalf("gossip key %x, needs a pass %v", id.GossipPublic(), id.NeedsPass(now))
	}
	again, err := LoadIdentity(dir)
	if err != nil || !again.GossipPublic().Equal(id.GossipPublic()) {
		t.Fatalf("the gossip key made is not kept: %v", err)
	}

	// Passes that are not this member's are refused, and nothing is kept.
	_, stranger, _ := ed25519.GenerateKey(nil)
	otherKey, _, _ := ed25519.GenerateKey(nil)
	for name, sp := range map[string]*wire.SignedMemberPass{
		"another member's":     issue(t, priv, "ag-2", wire.Role_ROLE_AGENT, id.GossipPublic(), wire.PassExpiry(now)),
		"for a relay":          issue(t, priv, "ag-1", wire.Role_ROLE_RELAY, id.GossipPublic(), wire.PassExpiry(now)),
		"for another key":      issue(t, priv, "ag-1", wire.Role_ROLE_AGENT, otherKey, wire.PassExpiry(now)),
		"signed by a stranger": issue(t, stranger, "ag-1", wire.Role_ROLE_AGENT, id.GossipPublic(), wire.PassExpiry(now)),
	} {
		if _, _, err := id.TakePass(dir, sp, now); err == nil {
			t.Errorf("took a pass %s", name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, passFile)); !os.IsNotExist(err) {
		t.Fatalf("a refused pass was kept: %v", err)
	}

	sp := issue(t, priv, "ag-1", wire.Role_ROLE_AGENT, id.GossipPublic(), wire.PassExpiry(now))
	pass, changed, err := id.TakePass(dir, sp, now)
	if err != nil || !changed || id.NeedsPass(now) {
		t.Fatalf("took %x (new %v): %v; still needs one: %v", pass, changed, err, id.NeedsPass(now))
	}
	if _, changed, _ := id.TakePass(dir, sp, now); changed {
		t.Error("the same pass again counts as new")
	}
	restarted, err := LoadIdentity(dir)
	if err != nil || string(restarted.Pass()) != string(pass) || restarted.NeedsPass(now) {
		t.Fatalf("after a restart: pass %x, %v", restarted.Pass(), err)
	}
	if !restarted.NeedsPass(wire.PassExpiry(now).Add(-wire.PassRenewBefore + time.Hour)) {
		t.Error("a pass that ends within PassRenewBefore is not renewed")
	}

	// A damaged gossip key is named, not replaced without a word.
	if err := os.WriteFile(filepath.Join(dir, gossipKeyFile), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(dir); err == nil {
		t.Error("a damaged gossip key loaded")
	}
}

// A pass that checks but cannot be written (a full or read-only disk) is
// taken all the same: the member announces it, and asks again after a
// restart.
func TestPassTakenWhenItCannotBeWritten(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	oldIdentity(t, dir, pub)
	id, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	sp := issue(t, priv, "ag-1", wire.Role_ROLE_AGENT, id.GossipPublic(), wire.PassExpiry(time.Now()))
	notADir := filepath.Join(dir, "a-file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	pass, changed, err := id.TakePass(notADir, sp, time.Now())
	if err == nil || !changed || len(pass) == 0 || id.NeedsPass(time.Now()) {
		t.Fatalf("pass %d bytes, new %v, err %v, still needs one %v", len(pass), changed, err, id.NeedsPass(time.Now()))
	}
}
