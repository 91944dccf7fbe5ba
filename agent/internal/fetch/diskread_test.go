package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

// Checking what is on disk is work the watchdog sees (a large artifact on
// a slow disk is no hang), and a stop is not held up by it.
func TestCheckingWhatIsOnDiskIsProgressAndStops(t *testing.T) {
	dir := t.TempDir()
	f, err := New(dir, nil, http.DefaultClient, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 3<<20)
	for i := range body {
		body[i] = byte(i)
	}
	sum := sha256.Sum256(body)
	a := &wire.Artifact{Sha256: hex.EncodeToString(sum[:]), Size: int64(len(body))}
	if err := os.WriteFile(filepath.Join(dir, a.GetSha256()), body, 0o600); err != nil {
		t.Fatal(err)
	}
	before := f.Progress()
	if _, err := f.Get(context.Background(), a, Sources{}); err != nil {
		t.Fatal(err)
	}
	if got := f.Progress() - before; got != uint64(len(body)) {
		t.Errorf("checking a cached artifact of %d bytes made %d of progress", len(body), got)
	}
	if f.Received() != 0 {
		t.Errorf("bytes read from disk counted as received: %d", f.Received())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if ok, err := f.verifyFile(ctx, filepath.Join(dir, a.GetSha256()), a); ok || !errors.Is(err, context.Canceled) {
		t.Errorf("a check asked to stop: %v, %v", ok, err)
	}
	if !f.Has(a) {
		t.Error("the cached artifact is not held any more")
	}
}
