package fetch

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/logging"
)

// The cache's bookkeeping (used.json, stats.json, a chunked download's
// sidecar) is written to a temporary file renamed into place; a kill in
// between leaves it behind. used.json and stats.json are not content
// files of any artifact, so garbage collection never looked at theirs,
// and a sidecar's stayed for as long as its artifact was named. A new
// fetcher, before anything of it writes, removes them and nothing else.
func TestNewFetcherRemovesWhatWritesCutShortByAKillLeft(t *testing.T) {
	dir := t.TempDir()
	sha := strings.Repeat("a", 64)
	files := map[string]bool{ // name → expected to go
		".used.json.tmp-2718281828":       true,
		".stats.json.tmp-1":               true,
		"." + sha + ".chunks.json.tmp-77": true,
		sha:                               false,
		sha + ".chunked":                  false,
		sha + ".chunks.json":              false,
		"used.json":                       false,
		".stats.json.tmp-":                false,
		"lost+found.tmp-1":                false,
	}
	for name := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := New(dir, nil, http.DefaultClient, logging.Discard(), prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	for name, gone := range files {
		_, err := os.Lstat(filepath.Join(dir, name))
		if gone && err == nil {
			t.Errorf("%s: a write cut short left it, and it is still there after New", name)
		}
		if !gone && err != nil {
			t.Errorf("%s: removed, but it is no leftover of a write: %v", name, err)
		}
	}
}
