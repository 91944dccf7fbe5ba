package agent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/outposthq/outpost/pkg/logging"
)

// The agent's own files outside its state and content cache — the
// identity (renewed certificates, member passes), the upgrade's records
// and the copy of the version before, hang.txt — are written to a
// temporary file renamed into place, which a kill in between leaves
// behind; nothing removed them (the copy of the version before, tens of
// megabytes, only an hour after a later upgrade). An agent that starts
// removes them, and nothing else.
func TestStartRemovesWhatWritesCutShortByAKillLeft(t *testing.T) {
	data := t.TempDir()
	files := map[string]bool{ // path under data → expected to go
		".hang.txt.tmp-123":                 true,
		"identity/.identity.json.tmp-45678": true,
		"identity/.pass.tmp-9":              true,
		"upgrade/.previous.tmp-31337":       true,
		"upgrade/.trial.json.tmp-1":         true,
		"hang.txt":                          false,
		"identity/identity.json":            false,
		"upgrade/previous":                  false,
		"sessions/.spool.tmp-1":             false, // the sessions' own
		".config.yaml.swp":                  false,
	}
	for name := range files {
		path := filepath.Join(data, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a := &Agent{cfg: Config{DataDir: data}, log: logging.Discard()}
	a.removeWriteLeftovers()
	for name, gone := range files {
		_, err := os.Lstat(filepath.Join(data, name))
		if gone && err == nil {
			t.Errorf("%s: a write cut short left it, and it is still there after the agent started", name)
		}
		if !gone && err != nil {
			t.Errorf("%s: removed, but it is no leftover of the agent's writes: %v", name, err)
		}
	}
}
