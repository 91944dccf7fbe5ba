package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/testutil"
)

// takeBackup calls POST /v1/backup and checks the hash in its trailer.
func takeBackup(t *testing.T, c *coordinatortest.Harness, body string) []byte {
	t.Helper()
	req, _ := http.NewRequest("POST", c.URL+"/v1/backup", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("backup: %d %v %s", resp.StatusCode, err, b)
	}
	sum := sha256.Sum256(b)
	if got := resp.Trailer.Get("X-Outpost-Backup-Sha256"); got != hex.EncodeToString(sum[:]) {
		t.Fatalf("backup of %d bytes: trailer %q, hash %x", len(b), got, sum)
	}
	return b
}

// TestRestoredCoordinatorTakesOverItsFleet: a backup taken while the
// coordinator runs, encrypted to an age key, is restored in place of its
// data directory after the fleet moved on three revisions. The agent
// keeps its certificate and the policy key it trusts; its office's
// revisions move past the one it holds at its first check-in, so new
// policy reaches it again. A member enrolled after the backup is unknown.
func TestRestoredCoordinatorTakesOverItsFleet(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("hq", map[string]any{"mode": "direct", "checkin_interval": "5s"})
	token := c.EnrollToken("hq", "agent", 3)
	startAgent(t, c, token, "pc-1", "127.0.0.2")
	rev := c.Apply("hq", "items: []\n")
	testutil.Eventually(t, 60*time.Second, compliantAt(c, "hq", 1, rev), "pc-1 compliant at revision %d", rev)

	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	for body, want := range map[string]string{
		`{}`:                              "give recipients",
		`{"recipients":["age1nope"]}`:     "not an age public key",
		`{"passphrase":"short"}`:          "shorter than 12",
		`{"plain":true,"passphrase":"x"}`: "exactly one",
	} {
		if code, msg := c.Do("POST", "/v1/backup", body, nil); code != 400 || !strings.Contains(msg, want) {
			t.Errorf("backup %s: %d %q, want 400 %q", body, code, msg, want)
		}
	}
	b := takeBackup(t, c, `{"recipients":["`+id.Recipient().String()+`"]}`)
	if !bytes.HasPrefix(b, []byte("age-encryption.org/v1")) || bytes.Contains(b, []byte("PRIVATE KEY")) {
		t.Fatal("the backup is not encrypted")
	}
	// Tested as a restore would open it (restore --check), on any machine.
	if chk, err := coordinator.CheckBackup(bytes.NewReader(b), id); err != nil || chk.Offices != 1 || chk.Members != 1 || chk.Manifest.CAFingerprint != c.CA {
		t.Fatalf("check the backup: %+v, %v", chk, err)
	}
	other, _ := age.GenerateX25519Identity()
	if _, err := coordinator.CheckBackup(bytes.NewReader(b), other); err == nil {
		t.Fatal("a backup checked with another key opened")
	}
	if _, err := coordinator.Restore(bytes.NewReader(b), coordinator.RestoreOptions{DataDir: c.DataDir(), Identities: []age.Identity{id}, Force: true, Now: time.Now()}); err == nil || !strings.Contains(err.Error(), "stop the coordinator first") {
		t.Fatalf("restore under a running coordinator: %v", err)
	}

	// The fleet moves on: three revisions, and a computer enrols.
	for range 3 {
		rev = c.ApplyNew("hq", "items: []\n")
	}
	testutil.Eventually(t, 60*time.Second, compliantAt(c, "hq", 1, rev), "pc-1 compliant at revision %d", rev)
	startAgent(t, c, token, "pc-late", "127.0.0.3")
	testutil.Eventually(t, 60*time.Second, func() bool { return len(c.Agents("hq")) == 2 }, "pc-late enrolled")
	held := rev

	// The coordinator's machine is lost; its backup is restored.
	c.Stop()
	opts := coordinator.RestoreOptions{DataDir: c.DataDir(), Identities: []age.Identity{id}, Now: time.Now()}
	if _, err := coordinator.Restore(bytes.NewReader(b), opts); err == nil || !strings.Contains(err.Error(), "--force moves it aside") {
		t.Fatalf("restore over a data directory without --force: %v", err)
	}
	opts.Force = true
	res, err := coordinator.Restore(bytes.NewReader(b), opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(res.MovedAside, "outpost.db")); err != nil {
		t.Fatalf("the old data directory was not kept: %v", err)
	}
	c.Restart()

	testutil.Eventually(t, 90*time.Second, func() bool {
		for _, a := range c.Agents("hq") {
			if a.Hostname == "pc-1" && a.Compliant && a.Revision > held {
				return true
			}
		}
		return false
	}, "pc-1 never took a revision above the %d it held: %+v", held, c.Agents("hq"))
	if agents := c.Agents("hq"); len(agents) != 1 {
		t.Errorf("agents after the restore: %+v, want pc-1 alone (pc-late enrolled after the backup)", agents)
	}
	next := c.ApplyNew("hq", "items: []\n")
	testutil.Eventually(t, 60*time.Second, compliantAt(c, "hq", 1, next), "pc-1 follows revision %d after the restore", next)
}
