package relay

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/testutil"
)

// The office's policy pins an artifact larger than the relay's disk: the
// relay reads none of it from the file server, however often it tries,
// says why, and warns once.
func TestPrestageOnFullDiskReadsNothing(t *testing.T) {
	disk := testutil.TinyDisk(t, "4m")
	quickStageRetry(t, 10*time.Millisecond)
	big := bytes.Repeat([]byte("big artifact "), 6<<20/13)
	up := newFake(big)
	cfg := testConfig(t)
	cfg.DataDir = filepath.Join(disk, "relay")
	logs := &logRecorder{}
	tr := runRelay(t, cfg, slog.New(logs), WithUpstream(up))
	h := hashOf(big)
	tr.applyPolicy(1, []string{h}, map[string]int64{h: int64(len(big))})
	testutil.Eventually(t, 30*time.Second, func() bool {
		return tr.metric(t, "outpost_relay_cache_upstream_fetches_total") >= 4
	}, "pre-stage not tried 4 times")
	if n := len(up.opens()); n != 0 {
		t.Errorf("asked the file server %d times for an artifact that cannot fit, want 0", n)
	}
	if got := tr.metric(t, "outpost_relay_cache_upstream_bytes_total"); got != 0 {
		t.Errorf("read %v bytes over the WAN, want 0", got)
	}
	if st, want := tr.Staging().Error, "cache disk full: need 6.0 MiB for "+h+", "; !strings.Contains(st, want) {
		t.Errorf("staging error %q, want it to say %q", st, want)
	}
	for _, msg := range []string{"fetch failed", "pre-stage failed"} {
		if n := logs.count(slog.LevelWarn, msg); n != 1 {
			t.Errorf("%d warnings %q, want 1", n, msg)
		}
	}
}
