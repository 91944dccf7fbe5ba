package peercache

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/agent/internal/fetch"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
)

// A peer that stops reading mid-chunk (a laptop that slept or left the
// office's Wi-Fi, a process that hung) gives its upload slot back once a
// write has made no progress for stallTimeout. It held the slot until TCP
// gave up (some 15 minutes), or for ever for a hung process whose kernel
// still answers, and with Concurrent such peers the member answered every
// other peer 503.
func TestStalledPeerGivesItsSlotBack(t *testing.T) {
	old := stallTimeout
	stallTimeout = 200 * time.Millisecond
	t.Cleanup(func() { stallTimeout = old })
	s, err := New(oneChunk{data: make([]byte, 64<<20)}, holderCounts{}, Budget{Concurrent: 1}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.handle(w, r, "ag-asker") }))
	t.Cleanup(srv.Close)
	path := fetch.PeerChunksPath + strings.Repeat("a", 64) + "/0"

	// The stalled peer asks for a chunk larger than the sockets' buffers
	// and never reads a byte of it.
	stalled, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stalled.Close() })
	fmt.Fprintf(stalled, "GET %s HTTP/1.1\r\nHost: peer\r\n\r\n", path)

	head := func() int {
		resp, err := http.Head(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return head() == http.StatusServiceUnavailable },
		"the stalled peer never took the only slot")
	testutil.Eventually(t, 5*time.Second, func() bool { return head() == http.StatusOK },
		"a peer that stopped reading still holds the only upload slot: every other peer is told 503")
}
