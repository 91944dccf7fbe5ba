package peercache

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/agent/internal/fetch"
	"github.com/outposthq/outpost/pkg/httprange"
	"github.com/outposthq/outpost/pkg/logging"
)

// What the chunk server answers, and to whom: members of the office with
// a certificate of the office's CA only; a clear 4xx for anything else.
func TestServerAnswers(t *testing.T) {
	ca := newCA(t)
	o := newOffice()
	data := randomData(3<<20 + 5)
	a := artifact(data, 1<<20)
	relay := newOrigin(t, data, 0)
	holder := o.join(t, ca, "ag-holder", Budget{Concurrent: 1})
	if _, err := holder.f.Get(context.Background(), a, fetch.Sources{Relays: []string{relay.URL}, Peers: holder}); err != nil {
		t.Fatal(err)
	}
	asker := o.join(t, ca, "ag-asker", Budget{Concurrent: 1})
	// Same CA, but not a member of this office's gossip.
	strangerTLS, _ := ClientTLS(clientCert(ca.member(t, "ag-elsewhere")), ca.anchors)
	stranger := &http.Client{Transport: &http.Transport{TLSClientConfig: strangerTLS}}
	// Another CA altogether.
	other := newCA(t)
	foreignTLS, _ := ClientTLS(clientCert(other.member(t, "ag-asker")), other.anchors)
	foreign := &http.Client{Transport: &http.Transport{TLSClientConfig: foreignTLS}}
	sha := a.GetSha256()
	unknown := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name   string
		client *http.Client
		path   string
		code   int
		body   string
	}{
		{"chunk map", asker.client, fetch.PeerChunksPath + sha, 200, ""},
		{"chunk", asker.client, fetch.PeerChunksPath + sha + "/1", 200, string(data[1<<20 : 2<<20])},
		{"last, short chunk", asker.client, fetch.PeerChunksPath + sha + "/3", 200, string(data[3<<20:])},
		{"unknown artifact", asker.client, fetch.PeerChunksPath + unknown + "/0", 404, "not held"},
		{"malformed hash", asker.client, fetch.PeerChunksPath + "abc/0", 400, "SHA-256"},
		{"upper-case hash", asker.client, fetch.PeerChunksPath + strings.ToUpper(sha) + "/0", 400, "SHA-256"},
		{"path traversal", asker.client, fetch.PeerChunksPath + "..%2f..%2fidentity%2fkey.pem/0", 400, "SHA-256"},
		{"index past the end", asker.client, fetch.PeerChunksPath + sha + "/4", 400, "index"},
		{"negative index", asker.client, fetch.PeerChunksPath + sha + "/-1", 400, "index"},
		{"index with junk", asker.client, fetch.PeerChunksPath + sha + "/01", 400, "index"},
		{"other path", asker.client, "/v1/blobs/sha256/" + sha, 404, "no such path"},
		{"not a member of the office", stranger, fetch.PeerChunksPath + sha + "/0", 403, "only members"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := tc.client.Get(holder.url + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || (tc.body != "" && !strings.Contains(string(body), tc.body)) {
				t.Fatalf("%d %.200q, want %d with %.60q", resp.StatusCode, body, tc.code, tc.body)
			}
		})
	}
	if _, err := foreign.Get(holder.url + fetch.PeerChunksPath + sha); err == nil {
		t.Error("a certificate of another CA was let in")
	}
	// A Range within a chunk, as a resumed chunk asks.
	req, _ := http.NewRequest("GET", holder.url+fetch.PeerChunksPath+sha+"/0", nil)
	req.Header.Set("Range", "bytes=1000-1009")
	resp, err := asker.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 206 || string(body) != string(data[1000:1010]) {
		t.Errorf("range: %d %q", resp.StatusCode, body)
	}
	// More ranges than any client of ours asks for: refused before they are parsed.
	req.Header.Set("Range", "bytes=0-0"+strings.Repeat(",2-2", httprange.MaxRanges))
	if resp, err = asker.client.Do(req); err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 416 || !strings.Contains(string(body), "too many byte ranges") {
		t.Errorf("too many ranges: %d %q", resp.StatusCode, body)
	}
	if got := counter(t, holder.reg, "outpost_agent_peer_served_bytes_total", "berlin"); got != float64(1<<20+len(data)-3<<20+10) {
		t.Errorf("served %v bytes", got)
	}
}

func TestBudgetValidate(t *testing.T) {
	if err := DefaultBudget().Validate(); err != nil {
		t.Error(err)
	}
	for _, b := range []Budget{{OfficeBytesPerSec: -1, Concurrent: 1}, {Concurrent: 0}, {Concurrent: 65}} {
		if b.Validate() == nil {
			t.Errorf("%+v accepted", b)
		}
	}
}

// fixedChunks holds one artifact of three chunks, all verified.
type fixedChunks struct{ sha string }

func (c fixedChunks) ChunkMap(sha, _ string) (fetch.Map, error) {
	if sha != c.sha {
		return fetch.Map{}, fetch.ErrNotHeld
	}
	return fetch.Map{Have: []byte{7}, Pending: []byte{0}, N: 3}, nil
}
func (c fixedChunks) OpenChunk(sha string, i int) (*fetch.Chunk, error) { return nil, fetch.ErrNotHeld }
func (c fixedChunks) AddServed(string, int64)                           {}

// The request path is the one thing a peer controls: whatever it is, the
// answer is a clean status, and only a well-formed hash and index reach
// the chunk store.
func FuzzServerPath(f *testing.F) {
	sha := strings.Repeat("0f", 32)
	for _, p := range []string{fetch.PeerChunksPath + sha, fetch.PeerChunksPath + sha + "/2", fetch.PeerChunksPath + "../../etc/passwd",
		fetch.PeerChunksPath + sha + "/+1", fetch.PeerChunksPath + sha + "/99999999999999999999", "/"} {
		f.Add(p)
	}
	s, err := New(fixedChunks{sha}, nil, DefaultBudget(), logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, path string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.URL.Path = path
		w := httptest.NewRecorder()
		s.handle(w, req, "ag-fuzz")
		switch w.Code {
		case 200, 400, 404, 503:
		default:
			t.Fatalf("%q: status %d", path, w.Code)
		}
		if w.Code == 200 && path != fetch.PeerChunksPath+sha {
			t.Fatalf("%q answered 200", path)
		}
	})
}
