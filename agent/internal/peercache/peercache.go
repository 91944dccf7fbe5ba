// Package peercache serves an agent's verified artifact chunks to the
// other members of its office, over HTTPS with mutual TLS: both sides
// present the member certificate the coordinator's CA issued them, and
// only members of the office's gossip (which the office key keeps to the
// office) are answered. Chunks are checked by the receiver against the
// signed policy anyway; TLS keeps the serving to the office, not the
// bytes honest.
//
// It owns the upload budget: a member sends to peers at most
// Budget.Concurrent chunks at a time, at a rate of the office's budget
// divided by the number of members that announce the artifact, so that
// together the holders of an artifact stay within the office's budget
// however many there are. It does not fetch (package fetch does) nor
// gossip (the agent does).
package peercache

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/outposthq/outpost/agent/internal/fetch"
	"github.com/outposthq/outpost/pkg/httprange"
	"github.com/outposthq/outpost/pkg/tlsutil"
)

// Budget is what a member may send to its office peers.
type Budget struct {
	// OfficeBytesPerSec is the office's upload budget for one artifact,
	// shared by the members that hold it: each sends at most this divided
	// by their number (0: no limit).
	OfficeBytesPerSec int64 `yaml:"office_bytes_per_sec"`
	// Concurrent is how many chunks a member sends at once; more are
	// refused with 503 and the asker goes elsewhere.
	Concurrent int `yaml:"concurrent"`
}

// DefaultBudget is 100 MB/s per artifact for the whole office (a busy
// gigabit LAN's worth, leaving room for everything else) and four chunks
// at a time per member.
func DefaultBudget() Budget { return Budget{OfficeBytesPerSec: 100_000_000, Concurrent: 4} }

// Validate says what is wrong with a budget.
func (b Budget) Validate() error {
	if b.OfficeBytesPerSec < 0 || b.Concurrent < 1 || b.Concurrent > 64 {
		return fmt.Errorf("peer upload budget: office_bytes_per_sec %d (want ≥ 0) and concurrent %d (want 1 to 64)", b.OfficeBytesPerSec, b.Concurrent)
	}
	return nil
}

// Chunks is what the server serves from (the agent's fetcher).
type Chunks interface {
	// ChunkMap is what this member tells asker about sha.
	ChunkMap(sha, asker string) (fetch.Map, error)
	OpenChunk(sha string, i int) (*fetch.Chunk, error)
	AddServed(sha string, n int64)
}

// Office says who may ask and how many share an artifact's uploads.
type Office interface {
	// IsMember reports whether id is a live member of this office.
	IsMember(id string) bool
	// HolderCount is how many members (this one included) announce sha.
	HolderCount(sha string) int
	// Name labels the metrics.
	Name() string
}

// Server serves chunks to office peers.
type Server struct {
	chunks  Chunks
	office  Office
	budget  Budget
	log     *slog.Logger
	slots   chan struct{}
	served  *prometheus.CounterVec
	refused *prometheus.CounterVec

	lmu sync.Mutex
	// limiters are the artifacts being sent now, each with its own share
	// of the office's budget; no more than Concurrent at once.
	limiters map[string]*shareLimiter
}

type shareLimiter struct {
	*rate.Limiter
	users int
}

// New builds a server; Serve starts it.
func New(chunks Chunks, office Office, budget Budget, logger *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if err := budget.Validate(); err != nil {
		return nil, err
	}
	s := &Server{chunks: chunks, office: office, budget: budget, log: logger.With("component", "peercache"),
		slots:    make(chan struct{}, budget.Concurrent),
		limiters: map[string]*shareLimiter{},
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_agent_peer_served_bytes_total", Help: "Artifact bytes sent to office peers, by office."}, []string{"office"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_agent_peer_requests_refused_total", Help: "Peer requests refused, by reason (busy, not_member, malformed)."}, []string{"reason"}),
	}
	for _, c := range []prometheus.Collector{s.served, s.refused} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// ServerTLS is the server side: the member's certificate (as cert
// returns it at each handshake: a renewed one replaces it), and peers
// must present one from the same CA.
func ServerTLS(cert func(*tls.ClientHelloInfo) (*tls.Certificate, error), cas func() []*x509.Certificate) (*tls.Config, error) {
	if len(cas()) == 0 {
		return nil, errors.New("no CA certificate to trust")
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: cert,
		ClientAuth:     tls.RequireAnyClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := verifyMember(raw, cas())
			return err
		},
	}, nil
}

// ClientTLS is the asking side. Member certificates name the member, not
// an address, so the chain is checked here and the name by the caller
// (the fetcher compares it with the peer it meant to reach).
func ClientTLS(cert func(*tls.CertificateRequestInfo) (*tls.Certificate, error), cas func() []*x509.Certificate) (*tls.Config, error) {
	if len(cas()) == 0 {
		return nil, errors.New("no CA certificate to trust")
	}
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: cert,
		InsecureSkipVerify:   true, // replaced by VerifyPeerCertificate: no address is in a member certificate
		// Resumed sessions skip the certificate signatures: an office of
		// many members asking each other often is not a handshake storm.
		ClientSessionCache: tls.NewLRUClientSessionCache(256),
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := verifyMember(raw, cas())
			return err
		},
	}, nil
}

func verifyMember(raw [][]byte, cas []*x509.Certificate) (*x509.Certificate, error) {
	if len(raw) == 0 {
		return nil, errors.New("no member certificate")
	}
	chain, err := tlsutil.ParseCerts(raw)
	if err != nil {
		return nil, err
	}
	if err := tlsutil.VerifyFromCA(chain, cas, x509.VerifyOptions{KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("not a member certificate of this coordinator: %w", err)
	}
	return chain[0], nil
}

// Serve answers on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsConf *tls.Config) error {
	srv := &http.Server{Handler: s, TLSConfig: tlsConf, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		// A peer giving up on a handshake is routine, not worth stderr.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	err := srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ServeHTTP answers GET PeerChunksPath+sha (the chunk map) and
// PeerChunksPath+sha/i (chunk i, with Range).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || !s.office.IsMember(r.TLS.PeerCertificates[0].Subject.CommonName) {
		s.refused.WithLabelValues("not_member").Inc()
		httpError(w, http.StatusForbidden, "only members of this office may ask")
		return
	}
	s.handle(w, r, r.TLS.PeerCertificates[0].Subject.CommonName)
}

// handle answers asker, a member of the office.
func (s *Server) handle(w http.ResponseWriter, r *http.Request, asker string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		httpError(w, http.StatusMethodNotAllowed, "GET only")
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, fetch.PeerChunksPath)
	if !ok {
		httpError(w, http.StatusNotFound, "no such path: "+r.URL.Path)
		return
	}
	sha, idx, hasIdx := strings.Cut(rest, "/")
	if !isSHA256(sha) {
		s.refused.WithLabelValues("malformed").Inc()
		httpError(w, http.StatusBadRequest, "not a SHA-256: want 64 lower-case hex digits")
		return
	}
	m, err := s.chunks.ChunkMap(sha, asker)
	if err != nil {
		httpError(w, http.StatusNotFound, "artifact not held here")
		return
	}
	n := m.N
	w.Header().Set(fetch.HeaderHave, base64.StdEncoding.EncodeToString(m.Have))
	w.Header().Set(fetch.HeaderChunks, strconv.Itoa(n))
	if m.Fetching {
		w.Header().Set(fetch.HeaderFetching, "1")
		w.Header().Set(fetch.HeaderPending, base64.StdEncoding.EncodeToString(m.Pending))
		if len(m.Fetchers) > 0 {
			w.Header().Set(fetch.HeaderFetchers, strings.Join(m.Fetchers, ","))
		}
	}
	if !hasIdx {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(m.Have)
		return
	}
	i, err := strconv.Atoi(idx)
	if err != nil || i < 0 || strconv.Itoa(i) != idx || i >= n {
		s.refused.WithLabelValues("malformed").Inc()
		httpError(w, http.StatusBadRequest, fmt.Sprintf("chunk %q: want an index from 0 to %d", idx, n-1))
		return
	}
	if err := httprange.Check(r); err != nil {
		s.refused.WithLabelValues("malformed").Inc()
		httpError(w, http.StatusRequestedRangeNotSatisfiable, err.Error())
		return
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		s.refused.WithLabelValues("busy").Inc()
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, "busy sending to other peers; ask another")
		return
	}
	c, err := s.chunks.OpenChunk(sha, i)
	if err != nil {
		httpError(w, http.StatusNotFound, "chunk not held here (yet)")
		return
	}
	defer c.Close()
	lim := s.share(sha)
	defer s.unshare(sha)
	lw := &limitedWriter{ResponseWriter: w, ctx: r.Context(), lim: lim}
	http.ServeContent(lw, r, "", time.Time{}, c)
	s.served.WithLabelValues(s.office.Name()).Add(float64(lw.n))
	s.chunks.AddServed(sha, lw.n)
}

// share is the limiter of sha's share of the office's budget (nil without
// a budget): the budget divided by the members that announce sha, so that
// when many hold it each sends less and the office's total stays the
// budget. Each artifact sent at once has a share of its own; the requests
// for one artifact share its limiter. unshare lets go of it.
func (s *Server) share(sha string) *rate.Limiter {
	if s.budget.OfficeBytesPerSec == 0 {
		return nil
	}
	holders := max(1, s.office.HolderCount(sha))
	lim := rate.Limit(float64(s.budget.OfficeBytesPerSec) / float64(holders))
	s.lmu.Lock()
	defer s.lmu.Unlock()
	l := s.limiters[sha]
	if l == nil {
		l = &shareLimiter{Limiter: rate.NewLimiter(lim, 256<<10)}
		s.limiters[sha] = l
	} else if l.Limit() != lim {
		l.SetLimit(lim)
	}
	l.users++
	return l.Limiter
}

func (s *Server) unshare(sha string) {
	if s.budget.OfficeBytesPerSec == 0 {
		return
	}
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if l := s.limiters[sha]; l != nil {
		if l.users--; l.users == 0 {
			delete(s.limiters, sha)
		}
	}
}

// stallTimeout is how long one write to a peer may make no progress: a
// peer that stopped reading (asleep, gone from the network, hung) would
// otherwise hold its upload slot until TCP gives up, or for ever.
var stallTimeout = 30 * time.Second

type limitedWriter struct {
	http.ResponseWriter
	ctx context.Context
	lim *rate.Limiter // nil: no budget
	n   int64
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := min(len(p), 64<<10)
		if w.lim != nil {
			if err := w.lim.WaitN(w.ctx, k); err != nil {
				return written, err
			}
		}
		// Set after the budget's wait, which is not the peer's doing.
		_ = http.NewResponseController(w.ResponseWriter).SetWriteDeadline(time.Now().Add(stallTimeout))
		m, err := w.ResponseWriter.Write(p[:k])
		written += m
		w.n += int64(m)
		if err != nil {
			return written, err
		}
		p = p[k:]
	}
	return written, nil
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, "{\"error\":%q}\n", msg)
}
