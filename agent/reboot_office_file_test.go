package agent

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/outposthq/outpost/agent/internal/runner"
	"github.com/outposthq/outpost/agent/internal/state"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

// TestRebootNeedKeepsEveryItemOfOneBootWhoseTimeDrifts: where the boot is
// named by a boot time worked out from the uptime (Windows), the same boot
// reads a second apart from call to call. Every item applied in that boot
// that needs a reboot stays recorded, so that a later run inside the
// window reboots for each of them.
func TestRebootNeedKeepsEveryItemOfOneBootWhoseTimeDrifts(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	st, err := state.Open(filepath.Join(t.TempDir(), "state"), pub)
	if err != nil {
		t.Fatal(err)
	}
	boot := "boot-1000"
	a := &Agent{state: st, log: logging.Discard(), bootIDFunc: func() string { return boot }}
	var cfg runner.Config
	a.rebootHooks(&cfg)
	cfg.RebootNeeded("patch/A")
	boot = "boot-1001" // the same boot, a second's drift later
	cfg.RebootNeeded("patch/B")
	if got := cfg.PendingReboots(); !slices.Equal(got, []string{"patch/A", "patch/B"}) {
		t.Fatalf("pending reboots in one boot = %v, want [patch/A patch/B]", got)
	}
}

// TestOfficeInformationKeptAfterAFailedWrite: the office information is
// written when it changes; a write that failed is made again at the next
// check-in, though the office has not changed since, instead of leaving
// the file stale (a rotated gossip key forgotten at the next start).
func TestOfficeInformationKeptAfterAFailedWrite(t *testing.T) {
	dir := t.TempDir()
	a := &Agent{cfg: Config{DataDir: dir}, log: logging.Discard()}
	old := &wire.OfficeInfo{Name: "yard", GossipKey: bytes.Repeat([]byte{1}, 32)}
	a.saveOffice(nil, old)
	info := &wire.OfficeInfo{Name: "yard", GossipKey: bytes.Repeat([]byte{2}, 32)} // rotated
	// The write fails: something is in the way of the file.
	if err := os.Remove(a.officeFile()); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(a.officeFile(), 0o700); err != nil {
		t.Fatal(err)
	}
	a.saveOffice(old, info)
	if err := os.Remove(a.officeFile()); err != nil {
		t.Fatal(err)
	}
	// The next check-in says the same of the office.
	a.saveOffice(info, info)
	if got := a.loadOffice(); !bytes.Equal(got.GetGossipKey(), info.GossipKey) {
		t.Fatalf("kept gossip key %x, want the rotated %x", got.GetGossipKey(), info.GossipKey)
	}
}
