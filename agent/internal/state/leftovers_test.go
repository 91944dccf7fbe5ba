package state

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
)

// Every file of the state is written to a temporary file that is then
// renamed into place; a kill or a power cut in between (a laptop's
// battery, a forced shutdown) leaves the temporary file behind. A run is
// queued every interval, so over a year a laptop that is switched off
// hard now and then gathers them in state/ and state/queue/, and nothing
// ever removed them. Open removes them (nothing of the agent's is
// writing yet), and nothing else.
func TestOpenRemovesWhatWritesCutShortByAKillLeft(t *testing.T) {
	dir := t.TempDir()
	pub, _, _ := ed25519.GenerateKey(nil)
	queue := filepath.Join(dir, "queue")
	if err := os.MkdirAll(queue, 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string]bool{ // path → expected to go
		filepath.Join(dir, ".policy.pb.tmp-1234567"):                    true,
		filepath.Join(dir, ".report.pb.tmp-99"):                         true,
		filepath.Join(dir, ".seq.tmp-42"):                               true,
		filepath.Join(queue, ".00000000000000000007.pb.tmp-3141592653"): true,
		filepath.Join(queue, "00000000000000000008.pb"):                 false, // a queued run (unreadable: kept all the same)
		filepath.Join(dir, "notes.txt"):                                 false,
		filepath.Join(dir, ".policy.pb.tmp-x"):                          false, // not a name WriteFileAtomic gives
		filepath.Join(dir, "policy.pb.damaged"):                         false,
	}
	for path := range files {
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(dir, pub); err != nil {
		t.Fatal(err)
	}
	for path, gone := range files {
		_, err := os.Lstat(path)
		if gone && err == nil {
			t.Errorf("%s: a write cut short left it, and it is still there after Open", path)
		}
		if !gone && err != nil {
			t.Errorf("%s: removed, but it is no leftover of a write: %v", path, err)
		}
	}
}
