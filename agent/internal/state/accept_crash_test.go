package state

import (
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/outposthq/outpost/pkg/wire"
)

// Accept writes highest.json (revision 3), then policy.pb. A kill between
// the two leaves revision 2 in policy.pb and 3 as the high-water mark. After
// the restart the agent applies revision 2 and asks the coordinator for its
// office's policy with revision 2; the coordinator (and every peer) sends
// it revision 3, the very document it was accepting. Refused as stale
// ("equal to the highest, same office"), the host would stay on revision 2
// until an admin published revision 4: it is taken.
func TestAcceptAfterAKillBetweenTheMarkAndThePolicy(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	sign := func(rev uint64) *wire.SignedPolicy {
		sp, err := wire.SignPolicy(priv, &wire.Policy{Office: "berlin", Revision: rev})
		if err != nil {
			t.Fatal(err)
		}
		return sp
	}
	s, err := Open(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Accept(sign(2), "berlin", self); err != nil {
		t.Fatal(err)
	}
	// Accept of revision 3: its first write, then the kill.
	hb, _ := json.Marshal(map[string]uint64{"berlin": 3})
	if err := os.WriteFile(filepath.Join(dir, "highest.json"), hb, 0o600); err != nil {
		t.Fatal(err)
	}

	s2, err := Open(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	if got := s2.RevisionIn("berlin"); got != 2 {
		t.Fatalf("after the kill the agent holds revision %d, want 2 (policy.pb was not replaced)", got)
	}
	if _, err := s2.Accept(sign(3), "berlin", self); err != nil {
		t.Fatalf("revision 3, sent again after the restart, is refused: %v; the agent stays on revision %d", err, s2.Revision())
	}
}
