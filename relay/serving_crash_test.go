package relay

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/outposthq/outpost/pkg/tlsutil"
)

// The relay renews its serving certificate while the one it has is still
// good (a third of its life left, or the office's URLs changed). It wrote
// serving.key, then serving.crt: a kill between the two left the new key
// beside the old certificate, and at the next start the relay had no
// certificate at all until the coordinator answered again (a relay
// restarted while the coordinator is out of reach served nothing). The
// pair is one file now, written in one step; a key left over from the old
// layout does not matter, and the old layout alone is still read.
func TestServingCertSurvivesAKillDuringRenewal(t *testing.T) {
	ca := newMiniCA(t)
	dir := t.TempDir()
	office := []string{"https://10.1.0.5:8090"}
	sc := &servingCert{dir: dir}
	if renewed, err := sc.ensure(context.Background(), ca.call, []string{"10.1.0.5"}, office); err != nil || !renewed {
		t.Fatalf("first issue: %v %v", renewed, err)
	}
	// The renewal's first write, then the kill.
	key, err := tlsutil.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.WriteKey(filepath.Join(dir, "serving.key"), key); err != nil {
		t.Fatal(err)
	}
	again := &servingCert{dir: dir}
	again.load()
	if _, err := again.GetCertificate(nil); err != nil {
		t.Fatalf("after a kill during renewal the relay has no serving certificate (the old one is valid until %s): %v", sc.leaf().NotAfter, err)
	}
	// A relay that kept the two files of a release before.
	c := sc.cert.Load()
	old := t.TempDir()
	if err := tlsutil.WriteKey(filepath.Join(old, "serving.key"), c.PrivateKey); err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.WriteCert(filepath.Join(old, "serving.crt"), c.Certificate[0]); err != nil {
		t.Fatal(err)
	}
	before := &servingCert{dir: old}
	before.load()
	if l := before.leaf(); l == nil || !l.Equal(c.Leaf) {
		t.Fatal("the serving certificate of a release before is not read")
	}
}
