package fetch

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

// Garbage collection removes the artifacts (and partial downloads and
// their bookkeeping) that no policy names any more and nothing used for
// the grace period; it keeps what is named, recent, being fetched or
// being served to a peer, and touches nothing but this agent's own
// content files, never through a symlink.
func TestCollectRemovesUnnamedOldContentOnly(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	f, err := New(dir, nil, &http.Client{Timeout: 10 * time.Second}, logging.Discard(), reg)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-48 * time.Hour)
	put := func(name string, size int, at time.Time) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
		return path
	}
	sha := func(c byte) string { return strings.Repeat(string(c), 64) }

	// Old packages 1.0 to 3.0, the current 4.0 and 3.0 as the policy
	// before: 1.0 (whole, with a stale partial of another download) and
	// 2.0 (a chunked download left half done) go.
	put(sha('1'), 1000, old)
	put(sha('1')+".part", 100, old)
	put(sha('2')+".chunked", 2000, old)
	put(sha('2')+".chunks.json", 10, old)
	put("."+sha('2')+".chunks.json.tmp-123", 10, old)
	put(sha('3'), 3000, old)
	put(sha('4'), 4000, old)
	// Unnamed but downloaded an hour ago: kept.
	put(sha('5'), 500, time.Now().Add(-time.Hour))
	// Unnamed, old, but being fetched right now: kept.
	put(sha('6')+".part", 600, old)
	fetching := f.lock(sha('6'))
	fetching.Lock()
	// Not this agent's content files, and a symlink to an old one
	// elsewhere: never touched.
	outside := filepath.Join(t.TempDir(), sha('7'))
	os.WriteFile(outside, make([]byte, 700), 0o600)
	os.Symlink(outside, filepath.Join(dir, sha('7')))
	os.Mkdir(filepath.Join(dir, sha('8')), 0o700)
	put(sha('9')+".bak", 900, old)
	put("notes.txt", 10, old)
	put(strings.ToUpper(sha('a')), 10, old)

	named := Named(
		&wire.Policy{Items: []*wire.Item{{Artifact: &wire.Artifact{Sha256: sha('4')}}, {Id: "no content"}}},
		&wire.Policy{Items: []*wire.Item{{Artifact: &wire.Artifact{Sha256: sha('3')}}}},
		nil)
	got := f.Collect(named, ContentGrace)
	if want := int64(1000 + 100 + 2000 + 10 + 10); got != want {
		t.Errorf("removed %d bytes, want %d", got, want)
	}
	if c := gcBytes(t, reg); c != float64(got) {
		t.Errorf("outpost_agent_content_gc_bytes_total %v, want %d", c, got)
	}
	left := names(t, dir)
	want := []string{sha('3'), sha('4'), sha('5'), sha('6') + ".part", sha('7'), sha('8'), sha('9') + ".bak", "notes.txt", strings.ToUpper(sha('a'))}
	for _, name := range want {
		if !slices.Contains(left, name) {
			t.Errorf("%s removed", name)
		}
	}
	for _, name := range []string{sha('1'), sha('1') + ".part", sha('2') + ".chunked", sha('2') + ".chunks.json", "." + sha('2') + ".chunks.json.tmp-123"} {
		if slices.Contains(left, name) {
			t.Errorf("%s kept", name)
		}
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("the symlink's target: %v", err)
	}
	// The fetch over, it goes; the names the policies gave keep theirs.
	fetching.Unlock()
	if got := f.Collect(named, ContentGrace); got != 600 {
		t.Errorf("second pass removed %d bytes, want the finished fetch's 600", got)
	}
	// Named a moment ago, then no more: kept for the grace period since,
	// however old the file, and across a restart.
	f2, err := New(dir, nil, &http.Client{}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if got := f2.Collect(map[string]bool{}, ContentGrace); got != 0 {
		t.Errorf("removed %d bytes named a moment ago", got)
	}
	// With a grace shorter than the hour since 5 was fetched, only it goes.
	if got := f2.Collect(map[string]bool{}, time.Minute); got != 500 {
		t.Errorf("removed %d bytes with a one-minute grace, want 500", got)
	}
}

// An artifact peers are fetching from this agent is not removed: not
// while a chunk is being sent, nor within the grace period after the
// last one was.
func TestCollectKeepsWhatPeersAreServed(t *testing.T) {
	data := make([]byte, 50_000)
	rand.Read(data)
	a := chunkedArtifact(data, 10_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "x", time.Time{}, bytes.NewReader(data))
	}))
	t.Cleanup(srv.Close)
	f := newFetcher(t, nil)
	holdings := 0
	f.OnHoldings(func() { holdings++ })
	path, err := f.Get(context.Background(), a, Sources{Relays: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-48 * time.Hour)
	os.Chtimes(path, old, old)
	setUsed := func(at time.Time) {
		f.hmu.Lock()
		f.used[a.Sha256] = at
		f.hmu.Unlock()
	}

	c, err := f.OpenChunk(a.Sha256, 2)
	if err != nil {
		t.Fatal(err)
	}
	// Served just now: kept for the grace period.
	if got := f.Collect(nil, ContentGrace); got != 0 {
		t.Fatalf("removed %d bytes served a moment ago", got)
	}
	// Being sent, long after the last use: kept all the same.
	setUsed(old)
	if got := f.Collect(nil, ContentGrace); got != 0 {
		t.Fatalf("removed %d bytes being sent to a peer", got)
	}
	if _, err := c.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	if b := make([]byte, 100); func() bool { _, err := c.Read(b); return err != nil }() {
		t.Fatal("the chunk being sent cannot be read")
	}
	c.Close()
	setUsed(old)
	before := holdings
	if got := f.Collect(nil, ContentGrace); got != int64(len(data)) {
		t.Fatalf("removed %d bytes, want %d once nothing is sent", got, len(data))
	}
	if _, err := f.OpenChunk(a.Sha256, 2); err == nil {
		t.Fatal("a removed artifact is still offered to peers")
	}
	if len(f.Holdings()) != 0 || holdings == before {
		t.Fatalf("holdings %v (announced again: %v), want none, announced", f.Holdings(), holdings != before)
	}
}

func gcBytes(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "outpost_agent_content_gc_bytes_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("outpost_agent_content_gc_bytes_total is not registered")
	return 0
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}
