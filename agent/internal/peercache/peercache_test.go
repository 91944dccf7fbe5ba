package peercache

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/agent/internal/fetch"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

// testCA issues member certificates as the coordinator's CA does: the
// member id as the common name, client authentication only.
type testCA struct {
	der  []byte
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t testing.TB) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Outpost CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{der: der, cert: cert, key: key}
}

// anchors is what a member that trusts this CA holds.
func (ca *testCA) anchors() []*x509.Certificate { return []*x509.Certificate{ca.cert} }

// clientCert shows cert at every handshake.
func clientCert(cert tls.Certificate) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
}

func (ca *testCA) member(t testing.TB, id string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: id}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// office is an in-memory office: who is in it and what each holds, as
// gossip would tell.
type office struct {
	mu      sync.Mutex
	members map[string]*member
	bad     map[string][]string // reporter → peers reported
	// sees, when set, is which peers' holdings a member's gossip has
	// carried so far (a lagging gossip); nil: every peer's.
	sees func(m, p string) bool
}

type member struct {
	id      string
	url     string
	f       *fetch.Fetcher
	reg     *prometheus.Registry
	client  *http.Client
	o       *office
	dir     string
	stopped bool
}

func (m *member) Self() string         { return m.id }
func (m *member) Client() *http.Client { return m.client }
func (m *member) Name() string         { return "berlin" }
func (m *member) Peers() []fetch.Peer {
	m.o.mu.Lock()
	defer m.o.mu.Unlock()
	var out []fetch.Peer
	for _, p := range m.o.members {
		if p != m && !p.stopped {
			out = append(out, fetch.Peer{Name: p.id, URL: p.url})
		}
	}
	return out
}

func (m *member) Holders(sha string) []fetch.Peer {
	m.o.mu.Lock()
	defer m.o.mu.Unlock()
	var out []fetch.Peer
	for _, p := range m.o.members {
		if p == m || p.stopped || (m.o.sees != nil && !m.o.sees(m.id, p.id)) {
			continue
		}
		for _, h := range p.f.Holdings() {
			if h == sha {
				out = append(out, fetch.Peer{Name: p.id, URL: p.url})
			}
		}
	}
	return out
}

func (m *member) HolderCount(sha string) int { return len(m.Holders(sha)) + 1 }

func (m *member) IsMember(id string) bool {
	m.o.mu.Lock()
	defer m.o.mu.Unlock()
	_, ok := m.o.members[id]
	return ok
}

func (m *member) BadPeer(peer, what string) {
	m.o.mu.Lock()
	defer m.o.mu.Unlock()
	m.o.bad[m.id] = append(m.o.bad[m.id], peer)
}

func newOffice() *office { return &office{members: map[string]*member{}, bad: map[string][]string{}} }

// join starts a member: a fetcher and its chunk server on 127.0.0.1.
func (o *office) join(t testing.TB, ca *testCA, id string, budget Budget) *member {
	t.Helper()
	return o.joinIn(t, ca, id, budget, t.TempDir())
}

func (o *office) joinIn(t testing.TB, ca *testCA, id string, budget Budget, dir string) *member {
	t.Helper()
	cert := ca.member(t, id)
	reg := prometheus.NewRegistry()
	f, err := fetch.New(dir, nil, &http.Client{}, logging.Discard(), reg)
	if err != nil {
		t.Fatal(err)
	}
	f.SetTuning(fetch.Tuning{Settle: 50 * time.Millisecond, Refresh: 50 * time.Millisecond, StallAfter: 3 * time.Second})
	ctls, err := ClientTLS(clientCert(cert), ca.anchors)
	if err != nil {
		t.Fatal(err)
	}
	m := &member{id: id, f: f, reg: reg, o: o, dir: dir, client: &http.Client{Transport: &http.Transport{TLSClientConfig: ctls}}}
	srv, err := New(f, m, budget, logging.Discard(), reg)
	if err != nil {
		t.Fatal(err)
	}
	stls, err := ServerTLS(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }, ca.anchors)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.url = "https://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, stls) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", id, err)
		}
	})
	o.mu.Lock()
	o.members[id] = m
	o.mu.Unlock()
	return m
}

// origin is the relay: it serves an artifact with Range and counts bytes.
type origin struct {
	*httptest.Server
	sent atomic.Int64
}

func newOrigin(t testing.TB, data []byte, rate float64) *origin {
	t.Helper()
	o := &origin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w, n: &o.sent, rate: rate, start: time.Now()}
		http.ServeContent(cw, r, "", time.Time{}, bytesReader(data))
	}))
	t.Cleanup(o.Close)
	return o
}

type countingWriter struct {
	http.ResponseWriter
	n     *atomic.Int64
	rate  float64 // bytes per second, 0 for no limit
	start time.Time
	sent  int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		k := min(len(p), 32<<10)
		if w.rate > 0 {
			if ahead := time.Duration(float64(w.sent)/w.rate*float64(time.Second)) - time.Since(w.start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		n, err := w.ResponseWriter.Write(p[:k])
		w.n.Add(int64(n))
		w.sent += int64(n)
		total += n
		if err != nil {
			return total, err
		}
		p = p[k:]
	}
	return total, nil
}

func artifact(data []byte, chunk int64) *wire.Artifact {
	sum := sha256.Sum256(data)
	h := wire.NewChunkHasher(chunk)
	h.Write(data)
	_, sums := h.Sum()
	return &wire.Artifact{Sha256: hex.EncodeToString(sum[:]), Size: int64(len(data)), ChunkSize: chunk, ChunkSha256: sums}
}

func randomData(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func fetched(t testing.TB, m *member, source string) float64 {
	t.Helper()
	return counter(t, m.reg, "outpost_agent_fetched_bytes_total", source)
}

// counter is the value of the series of name with a label valued label.
func counter(t testing.TB, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func checkFile(t testing.TB, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("%s: bytes differ from the artifact", path)
	}
}

// Three members fetch at once: the relay sends each chunk about once, and
// the members trade the rest among themselves.
func TestMembersShareTheRelaysWork(t *testing.T) {
	ratio, ms, size := relayShare(t, 40e6, 0, nil)
	var peer float64
	for _, m := range ms {
		peer += fetched(t, m, "peer")
	}
	t.Logf("peers sent %.2f× the artifact", peer/float64(size))
	if ratio > 2 {
		t.Errorf("relay sent %.2f× the artifact to 4 members fetching at once, want ≤ 2×", ratio)
	}
	if peer < float64(size) {
		t.Errorf("peers sent only %.0f bytes", peer)
	}
	// Each member's own figures add up to the artifact.
	for _, m := range ms {
		ab := m.f.ArtifactBytes()
		if len(ab) != 1 || ab[0].GetPeer()+ab[0].GetRelay() < int64(size) {
			t.Errorf("%s figures %v", m.id, ab)
		}
	}
}

// A member whose copy went bad on disk serves chunks that fail their hash:
// the asker drops it, reports it, counts it, and still ends with the right
// bytes from the others.
func TestPeerServingBadChunksIsDroppedAndReported(t *testing.T) {
	ca := newCA(t)
	o := newOffice()
	data := randomData(8<<20 + 777)
	a := artifact(data, 1<<20)
	relay := newOrigin(t, data, 0)
	bad := o.join(t, ca, "ag-bad", Budget{Concurrent: 4})
	path, err := bad.f.Get(context.Background(), a, fetch.Sources{Relays: []string{relay.URL}, Office: "berlin", Peers: bad})
	if err != nil {
		t.Fatal(err)
	}
	// Flip one byte in every chunk.
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(100); off < int64(len(data)); off += 1 << 20 {
		fh.WriteAt([]byte{data[off] ^ 0xff}, off)
	}
	fh.Close()

	asker := o.join(t, ca, "ag-ask", Budget{Concurrent: 4})
	got, err := asker.f.Get(context.Background(), a, fetch.Sources{Relays: []string{relay.URL}, Office: "berlin", Peers: asker})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, got, data)
	o.mu.Lock()
	reported := o.bad["ag-ask"]
	o.mu.Unlock()
	if len(reported) != 1 || reported[0] != "ag-bad" {
		t.Errorf("reported %v, want [ag-bad] once", reported)
	}
	if n := counter(t, asker.reg, "outpost_agent_peer_bad_chunks_total", "berlin"); n < 1 || n > 2 {
		t.Errorf("bad chunks counted %v, want 1 or 2 (at most the chunks in flight from it when the first failed)", n)
	}
	if ab := asker.f.ArtifactBytes(); len(ab) != 1 || ab[0].GetBadChunks() < 1 {
		t.Errorf("per-artifact figures %v: want the bad chunk", ab)
	}
}

// Cancelled at about 60%, a download resumes from its sidecar: what crosses
// the network twice is under one chunk.
func TestResumeRefetchesLessThanOneChunk(t *testing.T) {
	ca := newCA(t)
	o := newOffice()
	data := randomData(32 << 20)
	const chunk = 4 << 20
	a := artifact(data, chunk)
	relay := newOrigin(t, data, 40e6)
	dir := t.TempDir()
	m := o.joinIn(t, ca, "ag-1", Budget{Concurrent: 4}, dir)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for relay.sent.Load() < int64(len(data))*6/10 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if _, err := m.f.Get(ctx, a, fetch.Sources{Relays: []string{relay.URL}, Office: "berlin", Peers: m}); err == nil {
		t.Fatal("the cancelled download finished")
	}
	first := relay.sent.Load()
	// A new agent process on the same disk.
	o2 := newOffice()
	m2 := o2.joinIn(t, ca, "ag-1", Budget{Concurrent: 4}, dir)
	path, err := m2.f.Get(context.Background(), a, fetch.Sources{Relays: []string{relay.URL}, Office: "berlin", Peers: m2})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, data)
	again := relay.sent.Load() - int64(len(data))
	t.Logf("cancelled after %d bytes; %d crossed twice", first, again)
	if again > chunk {
		t.Errorf("%d bytes crossed twice, want at most one chunk (%d)", again, chunk)
	}
	if _, err := os.Stat(filepath.Join(dir, a.GetSha256()+".chunks.json")); !os.IsNotExist(err) {
		t.Errorf("sidecar left behind: %v", err)
	}
}

// Members that get the policy apart from each other (the first one well
// before the others hear of the download): the early one learns of the
// later ones while it is busy with the relay and shares the relay's work
// with them, rather than taking every chunk from the relay itself.
func TestMembersStartingApartShareTheRelaysWork(t *testing.T) {
	if ratio, _, _ := relayShare(t, 20e6, 150*time.Millisecond, nil); ratio > 1.5 {
		t.Errorf("relay sent %.2f× the artifact to 4 members starting 150 ms apart, want ≤ 1.5×", ratio)
	}
}

// Members whose gossip has carried only one peer's holdings each (a ring:
// each hears of the next) still learn of every member downloading the
// artifact, from the maps they read and the peers that ask them, and
// split the relay's work among all four.
func TestMembersWithLaggingGossipShareTheRelaysWork(t *testing.T) {
	ring := func(m, p string) bool {
		var i, j int
		fmt.Sscanf(m, "ag-%d", &i)
		fmt.Sscanf(p, "ag-%d", &j)
		return j == (i+1)%4
	}
	if ratio, _, _ := relayShare(t, 20e6, 0, ring); ratio > 1.5 {
		t.Errorf("relay sent %.2f× the artifact to 4 members whose gossip lags, want ≤ 1.5×", ratio)
	}
}

// relayShare has four members of an office fetch a 24 MiB artifact from
// one relay sending rate bytes/s, each starting stagger after the one
// before, member m's gossip showing it peer p only when sees(m, p) (nil:
// every peer); it returns what the relay sent, in artifacts, the members
// and the artifact's size.
func relayShare(t *testing.T, rate float64, stagger time.Duration, sees func(m, p string) bool) (float64, []*member, int) {
	t.Helper()
	ca := newCA(t)
	o := newOffice()
	data := randomData(24<<20 + 12345)
	a := artifact(data, 1<<20)
	relay := newOrigin(t, data, rate)
	var ms []*member
	for i := range 4 {
		ms = append(ms, o.join(t, ca, fmt.Sprintf("ag-%d", i), Budget{Concurrent: 4}))
	}
	o.sees = sees
	var wg sync.WaitGroup
	errs := make([]error, len(ms))
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * stagger)
			var path string
			path, errs[i] = m.f.Get(context.Background(), a, fetch.Sources{Relays: []string{relay.URL}, Office: "berlin", Peers: m})
			if errs[i] == nil {
				checkFile(t, path, data)
			}
		}()
	}
	wg.Wait()
	for i, m := range ms {
		if errs[i] != nil {
			t.Fatalf("%s: %v", m.id, errs[i])
		}
	}
	ratio := float64(relay.sent.Load()) / float64(len(data))
	t.Logf("relay sent %.2f× the artifact", ratio)
	return ratio, ms, len(data)
}
