package e2e

import (
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/outposthq/outpost/pkg/logging"
)

// keptLines is how many of a test's last log lines are printed when it
// fails.
const keptLines = 1500

// testLogs holds the recent log lines of each running test.
var testLogs sync.Map // testing.TB → *logRing

// testLogger is where a test's agents and relays log. With
// OUTPOST_TEST_LOG set, everything goes to stderr; otherwise a test keeps
// its last lines at debug level and prints them only if it fails, so that
// a failure seen once (in CI, under load) says what the members did.
// Benchmarks log nothing: the formatting would be part of what they time.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("OUTPOST_TEST_LOG") != "" {
		l, _ := logging.New(os.Stderr, "debug", "text")
		return l
	}
	if _, bench := t.(*testing.B); bench {
		return logging.Discard()
	}
	r, loaded := testLogs.LoadOrStore(t, &logRing{})
	ring := r.(*logRing)
	if !loaded {
		t.Cleanup(func() {
			testLogs.Delete(t)
			if t.Failed() {
				t.Logf("the last %d log lines of the test's members:\n%s", keptLines, ring.String())
			}
		})
	}
	l, _ := logging.New(ring, "debug", "text")
	return l
}

// logRing keeps the last keptLines lines written to it; slog writes one
// record per call.
type logRing struct {
	mu    sync.Mutex
	lines []string
	next  int
}

func (r *logRing) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	r.mu.Lock()
	if len(r.lines) < keptLines {
		r.lines = append(r.lines, line)
	} else {
		r.lines[r.next] = line
		r.next = (r.next + 1) % keptLines
	}
	r.mu.Unlock()
	return len(p), nil
}

func (r *logRing) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(append(append([]string(nil), r.lines[r.next:]...), r.lines[:r.next]...), "\n")
}
