package session

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

// A session token opens one session, and the host kept the ids of the ones
// it took in memory only: restarted within the token's two minutes (an
// upgrade, a crash, a technician's own "restart the agent"), it took the
// same token again for a second session. The ids are kept on disk until
// their tokens expire.
func TestASpentSessionTokenStaysSpentAcrossARestart(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	at := &wire.AccessToken{User: "tina", TokenId: "st-0001", ExpiresUnixMs: now.Add(2 * time.Minute).UnixMilli()}
	if err := f.s.spend(at); err != nil {
		t.Fatal(err)
	}
	restarted, err := New(f.s.cfg, fixedPolicy{f.p}, fixedInventory{}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := restarted.spend(at); err == nil || !strings.Contains(err.Error(), "used already") {
		t.Fatalf("after a restart the same token: %v, want refused as used", err)
	}
	// Expired ids are not kept, and a damaged file costs the host nothing
	// but the ids it held.
	restarted.now = func() time.Time { return now.Add(3 * time.Minute) }
	if err := restarted.spend(&wire.AccessToken{User: "tina", TokenId: "st-0002", ExpiresUnixMs: now.Add(4 * time.Minute).UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(f.dir, spentFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "st-0001") || !strings.Contains(string(b), "st-0002") {
		t.Fatalf("kept on disk: %q; want st-0002 alone", b)
	}
	if err := os.WriteFile(filepath.Join(f.dir, spentFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(f.s.cfg, fixedPolicy{f.p}, fixedInventory{}, logging.Discard(), prometheus.NewRegistry()); err != nil {
		t.Fatalf("a damaged file of spent tokens kept the agent from starting: %v", err)
	}
}
