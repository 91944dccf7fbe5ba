package fetch

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/logging"
)

// peerServer is an office peer at 127.0.0.1 whose TLS certificate
// names member id, answering with h.
func peerServer(t *testing.T, id string, h http.Handler) *httptest.Server {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: id},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// fixedOffice is an office of this member ("ag-self") and fixed peers.
type fixedOffice struct {
	peers  []Peer
	mu     sync.Mutex
	bad    []string
	client *http.Client
}

func (o *fixedOffice) Self() string          { return "ag-self" }
func (o *fixedOffice) Holders(string) []Peer { return o.peers }
func (o *fixedOffice) Peers() []Peer         { return o.peers }
func (o *fixedOffice) IsMember(id string) bool {
	for _, p := range o.peers {
		if p.Name == id {
			return true
		}
	}
	return false
}
func (o *fixedOffice) Client() *http.Client {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.client == nil {
		o.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	}
	return o.client
}
func (o *fixedOffice) BadPeer(peer, what string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.bad = append(o.bad, peer)
}
func (o *fixedOffice) reported() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.bad...)
}

func allOnes(n int) []byte {
	b := newBitset(n)
	for i := range n {
		b.set(i)
	}
	return b
}

// A peer that says it is fetching every chunk, and whose chunk map shows
// one chunk it then denies having, holds nothing back for longer than
// StallAfter: its map never shows more than before, so its word stops
// counting, and the healthy relay sends the rest.
func TestALyingPeerHoldsBackTheRelayForOneStallAtMost(t *testing.T) {
	data := make([]byte, 4*1000)
	rand.Read(data)
	a := chunkedArtifact(data, 1000)
	n := 4
	var chunkAsks atomic.Int32
	evil := peerServer(t, "ag-evil", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		have := newBitset(n)
		have.set(0) // "I have chunk 0 now"
		w.Header().Set(HeaderHave, base64.StdEncoding.EncodeToString(have))
		w.Header().Set(HeaderFetching, "1")
		w.Header().Set(HeaderPending, base64.StdEncoding.EncodeToString(allOnes(n)))
		if strings.Count(strings.TrimPrefix(r.URL.Path, PeerChunksPath), "/") == 1 {
			chunkAsks.Add(1)
			http.Error(w, "not held", http.StatusNotFound) // ... but not really
			return
		}
		w.Write(have)
	}))
	relay, _ := serve(t, data)
	o := &fixedOffice{peers: []Peer{{Name: "ag-evil", URL: evil.URL}}}
	f, err := New(t.TempDir(), nil, &http.Client{Timeout: 5 * time.Second}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	const stall = 300 * time.Millisecond
	f.SetTuning(Tuning{Settle: 10 * time.Millisecond, Refresh: 20 * time.Millisecond, StallAfter: stall})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second) // 10× StallAfter
	defer cancel()
	start := time.Now()
	_, err = f.Get(ctx, a, Sources{Relays: []string{relay.URL}, Office: "berlin", Peers: o})
	if err != nil {
		t.Fatalf("download with a healthy relay and one lying peer: %v after %v (StallAfter %v; the peer was asked %d times for a chunk it then denied)",
			err, time.Since(start).Round(time.Millisecond), stall, chunkAsks.Load())
	}
}

// A peer that sends the first half of a chunk as garbage and then cuts
// the connection is found out: the chunk, resumed from the relay, fails
// its hash, which is nobody's fault yet (the healthy relay is kept, not
// left for the file server); fetched whole, it shows that the peer's
// bytes were not the chunk's, and the peer is dropped and reported.
func TestAPeersBadPartOfAChunkIsBlamedOnThePeer(t *testing.T) {
	const chunk = 64 << 10
	n := 4
	data := make([]byte, n*chunk)
	rand.Read(data)
	a := chunkedArtifact(data, chunk)
	evil := peerServer(t, "ag-evil", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderHave, base64.StdEncoding.EncodeToString(allOnes(n)))
		if strings.Count(strings.TrimPrefix(r.URL.Path, PeerChunksPath), "/") == 0 {
			w.Write(allOnes(n))
			return
		}
		if r.Header.Get("Range") != "" {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		// Half a chunk of garbage, then the connection drops.
		w.Header().Set("Content-Length", "65536")
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, chunk/2))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	relay, _ := serve(t, data)
	var presigned atomic.Int32
	fileServer, _ := serve(t, data)
	o := &fixedOffice{peers: []Peer{{Name: "ag-evil", URL: evil.URL}}}
	f, err := New(t.TempDir(), presignFunc(func(context.Context, string) (string, error) {
		presigned.Add(1)
		return fileServer.URL, nil
	}), &http.Client{Timeout: 5 * time.Second}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	f.SetTuning(Tuning{Settle: 10 * time.Millisecond, Refresh: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.Get(ctx, a, Sources{Relays: []string{relay.URL}, Direct: true, Office: "berlin", Peers: o}); err != nil {
		t.Fatal(err)
	}
	if p := presigned.Load(); p != 0 {
		t.Errorf("the healthy relay was left for the file server (%d presigned URLs): a peer's bad bytes were charged to the relay", p)
	}
	if bad := o.reported(); len(bad) == 0 {
		t.Errorf("the peer whose bytes failed the chunk hash was never reported nor dropped")
	}
}

// A member that says it is downloading the artifact but never gets a
// chunk keeps its share of the relay's work for one StallAfter, then
// counts no more: the others take its share from the relay then, rather
// than a few chunks per StallAfter.
func TestASilentDownloaderGivesUpItsShareAfterOneStall(t *testing.T) {
	const n = 32
	data := make([]byte, n*1000)
	rand.Read(data)
	a := chunkedArtifact(data, 1000)
	evil := peerServer(t, "ag-evil", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderHave, base64.StdEncoding.EncodeToString(newBitset(n)))
		w.Header().Set(HeaderFetching, "1")
		w.Write(newBitset(n))
	}))
	relay, _ := serve(t, data)
	o := &fixedOffice{peers: []Peer{{Name: "ag-evil", URL: evil.URL}}}
	f, err := New(t.TempDir(), nil, &http.Client{Timeout: 5 * time.Second}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	const stall = 300 * time.Millisecond
	f.SetTuning(Tuning{Settle: 10 * time.Millisecond, Refresh: 20 * time.Millisecond, StallAfter: stall})
	ctx, cancel := context.WithTimeout(context.Background(), 8*stall)
	defer cancel()
	start := time.Now()
	if _, err := f.Get(ctx, a, Sources{Relays: []string{relay.URL}, Office: "berlin", Peers: o}); err != nil {
		t.Fatalf("%d chunks of 1000 bytes from an idle relay, one peer that only says it is downloading: %v after %v (StallAfter %v)",
			n, err, time.Since(start).Round(time.Millisecond), stall)
	}
}

// Members a peer names as downloading the artifact count only if they are
// members of the office: names it invents do not shrink this member's
// share of the relay's work.
func TestMembersAPeerInventsDoNotShareTheRelaysWork(t *testing.T) {
	const n = 32
	data := make([]byte, n*1000)
	rand.Read(data)
	a := chunkedArtifact(data, 1000)
	var names []string
	for i := range maxFetchers {
		names = append(names, fmt.Sprintf("ghost-%02d", i))
	}
	evil := peerServer(t, "ag-evil", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderHave, base64.StdEncoding.EncodeToString(newBitset(n)))
		w.Header().Set(HeaderFetching, "1")
		w.Header().Set(HeaderFetchers, strings.Join(names, ","))
		w.Write(newBitset(n))
	}))
	relay, _ := serve(t, data)
	o := &fixedOffice{peers: []Peer{{Name: "ag-evil", URL: evil.URL}}}
	reg := prometheus.NewRegistry()
	f, err := New(t.TempDir(), nil, &http.Client{Timeout: 5 * time.Second}, logging.Discard(), reg)
	if err != nil {
		t.Fatal(err)
	}
	// No stall within the test: only this member's share comes from the relay.
	f.SetTuning(Tuning{Settle: 10 * time.Millisecond, Refresh: 20 * time.Millisecond, StallAfter: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	f.Get(ctx, a, Sources{Relays: []string{relay.URL}, Office: "berlin", Peers: o})
	got := int(fetched(t, reg, "relay", "berlin") / 1000)
	if got < n/4 {
		t.Errorf("took %d of %d chunks from the relay in 1s with one real fellow downloader (about %d expected): "+
			"the %d names the peer invented count as downloaders sharing the work", got, n, n/2, len(names))
	}
}
