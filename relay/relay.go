// Package relay is the branch-office relay: it serves artifacts to the
// office's agents over HTTPS (plain HTTP where the office allows it),
// addressed by SHA-256, from an on-disk
// pull-through cache of the file server, so that the WAN carries each byte
// once per office. Run ties its components together: the content server
// now; enrollment, office gossip and pre-staging join as further components.
//
// It is not the file server and holds no write credentials; it never trusts
// the bytes it relays (the cache verifies them, and agents verify again).
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/relay/internal/cache"
	"github.com/outposthq/outpost/relay/internal/upstream"
)

// Component is a part of the relay that runs beside the content server for
// as long as Run does, such as enrollment, office gossip or pre-staging. Run
// must return once ctx ends; an error before that stops the whole relay.
type Component interface {
	Run(ctx context.Context) error
}

// ComponentFunc adapts a function to Component.
type ComponentFunc func(ctx context.Context) error

// Run calls f.
func (f ComponentFunc) Run(ctx context.Context) error { return f(ctx) }

// Option changes how New builds a Relay.
type Option func(*options)

type options struct {
	upstream   cache.Upstream
	fileServer func(context.Context) (*wire.FileServerResponse, error)
	gatherer   prometheus.Gatherer
	components []namedComponent
}

type namedComponent struct {
	name string
	c    Component
}

// WithUpstream makes the cache read misses from up instead of the file
// server named by the config; for tests and special deployments.
func WithUpstream(up cache.Upstream) Option { return func(o *options) { o.upstream = up } }

// WithFileServer makes the relay read the file server with the short-lived
// credentials fetch returns (the coordinator's FileServerResponse), fetching
// again before they expire. It takes precedence over file_server in the
// config, and WithUpstream over it.
func WithFileServer(fetch func(context.Context) (*wire.FileServerResponse, error)) Option {
	return func(o *options) { o.fileServer = fetch }
}

// WithGatherer sets what /metrics serves. Without it, /metrics serves the
// Registerer given to New if that is also a Gatherer (a *prometheus.Registry
// is), and is absent otherwise.
func WithGatherer(g prometheus.Gatherer) Option { return func(o *options) { o.gatherer = g } }

// WithComponent adds a component that Run runs beside the content server;
// name appears in logs and errors.
func WithComponent(name string, c Component) Option {
	return func(o *options) { o.components = append(o.components, namedComponent{name, c}) }
}

// Relay is one relay process.
type Relay struct {
	cfg        Config
	logger     *slog.Logger
	cache      *cache.Cache
	egress     *rate.Limiter // nil: no limit
	handler    http.Handler
	components []namedComponent
	metrics    *httpMetrics
	inflight   inflight
	tls        *tls.Config // nil: plain HTTP
	unlock     func()      // releases the cache directory
	membership *membership // nil: not a member of an office

	started  atomic.Bool
	mu       sync.Mutex
	addr     string
	wanted   []string         // artifacts the office's policy names
	sizes    map[string]int64 // their sizes
	revision uint64           // of the policy that names them
	stageErr string           // the last pre-stage failure, until a pass succeeds
	stage    chan struct{}    // wakes prestage
}

// applyPolicy pins the artifacts a newer signed policy of the office names
// and has them fetched ahead of the agents.
func (r *Relay) applyPolicy(revision uint64, hashes []string, sizes map[string]int64) {
	r.cache.SetPinned(hashes)
	r.cache.SetExpectedSizes(sizes)
	r.mu.Lock()
	r.wanted, r.sizes, r.revision, r.stageErr = hashes, sizes, revision, ""
	r.mu.Unlock()
	r.logger.Info("office policy taken: artifacts pinned and pre-staged", "revision", revision, "artifacts", len(hashes))
	r.restage()
}

func (r *Relay) restage() {
	select {
	case r.stage <- struct{}{}:
	default:
	}
}

// stageRetry is how soon a pre-stage that failed is tried again; every
// pass that fails again doubles it, up to stageRetryMax, and a pass that
// stages everything starts it over. A full disk or a file server that is
// down does not heal in seconds, and each try may cost WAN bytes.
var stageRetry, stageRetryMax = 5 * time.Second, 5 * time.Minute

// backoff is the wait before the next try after failures in a row.
type backoff struct {
	first, limit, next time.Duration
}

func newBackoff(first, limit time.Duration) *backoff {
	return &backoff{first: first, limit: max(limit, first), next: first}
}

// failed returns how long to wait now, and doubles the next wait.
func (b *backoff) failed() time.Duration {
	d := b.next
	b.next = min(b.next*2, b.limit)
	return d
}

// succeeded starts the waits over.
func (b *backoff) succeeded() { b.next = b.first }

// failureKind is what makes two failures of one artifact the same for the
// log: the class of error, not its text (which carries byte counts).
func failureKind(err error) string {
	for _, k := range []error{cache.ErrDiskFull, cache.ErrNotFound, cache.ErrIntegrity, cache.ErrUpstream} {
		if errors.Is(err, k) {
			return k.Error()
		}
	}
	return err.Error()
}

// prestage fetches the artifacts the policy names that are not cached yet,
// one at a time, so that the WAN is used before the agents ask. Each
// artifact staged, and the end of a pass, is reported to the coordinator at
// once (a distribution office's agents wait for it); a failed one is tried
// again later, backing off (stageRetry). A failure is a warning the first
// time; the same failure of the same artifact again is logged at debug
// level, until it succeeds or fails otherwise.
func (r *Relay) prestage(ctx context.Context) error {
	var retry <-chan time.Time
	wait := newBackoff(stageRetry, stageRetryMax)
	warned := map[string]string{} // artifact: the kind of failure warned of
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.stage:
		case <-retry:
		}
		retry = nil
		r.mu.Lock()
		wanted := r.wanted
		r.mu.Unlock()
		failed := 0
		for _, h := range wanted {
			if ctx.Err() != nil {
				return nil
			}
			if r.cache.Has(h) {
				delete(warned, h)
				continue
			}
			f, size, err := r.cache.Get(ctx, h)
			if err != nil {
				if ctx.Err() == nil {
					r.mu.Lock()
					r.stageErr = fmt.Sprintf("%s: %v", h[:min(12, len(h))], err)
					r.mu.Unlock()
					kind := failureKind(err)
					log := r.logger.Warn
					if warned[h] == kind {
						log = r.logger.Debug
					}
					warned[h] = kind
					log("pre-stage failed; trying again later, backing off", "sha256", h, "err", err)
					failed++
				}
				continue
			}
			f.Close()
			if _, ok := warned[h]; ok {
				r.logger.Info("pre-staged after failing before", "sha256", h, "bytes", size)
				delete(warned, h)
			} else {
				r.logger.Info("pre-staged", "sha256", h, "bytes", size)
			}
			r.reportStaging()
		}
		for h := range warned {
			if !slices.Contains(wanted, h) { // no longer in the policy
				delete(warned, h)
			}
		}
		if failed > 0 {
			in := wait.failed()
			r.logger.Debug("pre-stage pass failed; trying again", "failed", failed, "in", in)
			retry = time.After(in)
		} else {
			wait.succeeded()
			clear(warned)
			r.mu.Lock()
			r.stageErr = ""
			r.mu.Unlock()
		}
		r.reportStaging()
	}
}

func (r *Relay) reportStaging() {
	if r.membership != nil {
		r.membership.checkinSoon()
	}
}

// Staging is how far pre-staging of the office policy's artifacts has come:
// those held in the cache, verified against their SHA-256.
func (r *Relay) Staging() *wire.StagingStatus {
	r.mu.Lock()
	wanted, sizes, st := r.wanted, r.sizes, &wire.StagingStatus{Revision: r.revision, Error: r.stageErr}
	r.mu.Unlock()
	for _, h := range wanted {
		st.Artifacts++
		st.Bytes += sizes[h]
		if r.cache.Has(h) {
			st.Staged++
			st.StagedBytes += sizes[h]
		}
	}
	return st
}

// New builds a relay from a valid cfg. It opens the cache directory (and
// clears temp files an earlier run left) and pins what the office policy
// saved by an earlier run names, but starts nothing; the file server is
// not contacted before the first miss.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer, opts ...Option) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		return nil, errors.New("relay: no logger given")
	}
	if reg == nil {
		return nil, errors.New("relay: no prometheus registerer given")
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	logger = logger.With("component", "relay")

	var m *membership
	up := o.upstream
	if up == nil {
		if cfg.Coordinator != "" && o.fileServer == nil {
			// A member of its office whatever it reads with: fixed
			// credentials say how it reads the file server, not that it
			// serves everyone (members_only) or ignores the policy's pins.
			m = newMembership(cfg, logger)
			o.components = append(o.components, namedComponent{"membership", m})
		}
		var src upstream.CredentialSource
		switch {
		case o.fileServer != nil:
			src = upstream.FetchFunc(o.fileServer)
		case cfg.FileServer.Configured():
			src = cfg.FileServer.static()
		case m != nil:
			// The usual case: the relay is a member of its office and reads
			// the file server with short-lived read-only credentials that
			// the coordinator issues; it holds no S3 secret of its own.
			src = upstream.FetchFunc(m.FileServer)
		default:
			return nil, errors.New("relay: no file server: set coordinator (and enroll_token, ca_fingerprint) to enrol " +
				"and read with coordinator-issued credentials, or file_server (endpoint, bucket, access_key, secret_key)")
		}
		u, err := upstream.New(src, logger)
		if err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
		up = u
		// Short-lived credentials are kept fresh while the relay is idle,
		// so that a read does not need the coordinator at that moment.
		o.components = append(o.components, namedComponent{"file-server credentials", u})
	}
	unlock, err := lockCache(filepath.Join(cfg.DataDir, "cache"))
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	c, err := cache.New(filepath.Join(cfg.DataDir, "cache"), up, logger, reg, cache.Options{
		MaxBytes:      cfg.CacheMaxBytes,
		UpstreamLimit: cache.NewLimiter(cfg.UpstreamBytesPerSec),
		Parallel:      cfg.ParallelRanges,
		ParallelMin:   cfg.ParallelMinBytes,
	})
	if err != nil {
		unlock()
		return nil, fmt.Errorf("relay: %w", err)
	}
	hm, err := newHTTPMetrics(reg)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("relay: %w", err)
	}
	gatherer := o.gatherer
	if gatherer == nil {
		gatherer, _ = reg.(prometheus.Gatherer)
	}
	r := &Relay{
		cfg:        cfg,
		logger:     logger,
		cache:      c,
		egress:     cache.NewLimiter(cfg.EgressBytesPerSec),
		components: o.components,
		metrics:    hm,
		stage:      make(chan struct{}, 1),
		unlock:     unlock,
		membership: m,
	}
	r.components = append(r.components, namedComponent{"prestage", ComponentFunc(r.prestage)})
	if m != nil {
		m.onPolicy = r.applyPolicy
		m.staging = r.Staging
	}
	switch {
	case cfg.PlainHTTP:
	case cfg.TLSCertFile != "":
		cf, err := tlsutil.LoadCertFile(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			unlock()
			return nil, fmt.Errorf("relay: %w", err)
		}
		r.tls = tlsutil.ServerTLS(cf.GetCertificate)
	case m != nil:
		sc := &servingCert{dir: filepath.Join(cfg.DataDir, "identity"), chain: m.caChain}
		sc.load()
		m.serving = sc
		r.tls = tlsutil.ServerTLS(sc.GetCertificate)
	default:
		unlock()
		return nil, errors.New("relay: no HTTPS certificate: enrol with a coordinator (coordinator, enroll_token, ca_fingerprint) " +
			"for one from its CA, or give tls_cert_file and tls_key_file, or set plain_http: true where the office allows plain HTTP")
	}
	if r.tls != nil && m != nil {
		// Members show their certificate (checked per content request,
		// against the CA learned at enrolment); /healthz needs none.
		r.tls.ClientAuth = tls.RequestClientCert
	}
	if r.tls != nil {
		// HTTP/1.1 only: artifacts are few large bodies, and one TCP
		// connection per download keeps failover and ranges simple.
		r.tls.NextProtos = []string{"http/1.1"}
	}
	// The cache evicts nothing until it knows the pins, so that a restart
	// keeps pinned objects beyond the cap: the saved policy's (applied by
	// loadSaved), or none for a relay that has no policy.
	pinsKnown := true
	if m != nil {
		pinsKnown = m.loadSaved()
	}
	if pinsKnown && r.revision == 0 {
		c.SetPinned(nil)
	}
	r.handler = r.routes(gatherer)
	return r, nil
}

// Addr is the address the content server listens on, once Run has bound
// it; "" before.
func (r *Relay) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addr
}

// Run serves until ctx ends, then lets downloads in progress finish for up
// to the configured shutdown timeout, stops the fetches that no download
// waits for (pre-staging), and returns once every goroutine it started has
// ended. It returns an error if it cannot listen or a component
// fails; a relay runs once.
func (r *Relay) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("relay: Run called twice")
	}
	defer r.unlock()
	ln, err := net.Listen("tcp", r.cfg.Listen)
	if err != nil {
		return fmt.Errorf("relay: listen for content on %s: %w", r.cfg.Listen, err)
	}
	r.mu.Lock()
	r.addr = ln.Addr().String()
	r.mu.Unlock()
	// The LAN send buffer is for bytes sent by sendfile: over HTTPS, where
	// the relay encrypts every byte and its own CPU is the limit, a fixed
	// buffer measured 3–11 % slower than autotuning on loopback.
	sendBuf := int(r.cfg.LANSendBufferBytes)
	if r.tls != nil {
		sendBuf = 0
	}
	lanConns, autotuned := r.metrics.connections.WithLabelValues("lan"), r.metrics.connections.WithLabelValues("autotuned")
	ln = lanListener{Listener: ln, sendBuf: sendBuf, rtt: LANRTT, stall: clientStallTimeout, counted: func(lan bool) {
		if lan {
			lanConns.Inc()
		} else {
			autotuned.Inc()
		}
	}}
	scheme := "http"
	if r.tls != nil {
		ln = tls.NewListener(ln, r.tls)
		scheme = "https"
	}
	r.logger.Info("relay serving content", "addr", ln.Addr().String(), "scheme", scheme, "data_dir", r.cfg.DataDir)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.serve(gctx, ln) })
	for _, nc := range r.components {
		g.Go(func() error {
			err := nc.c.Run(gctx)
			if err == nil || (gctx.Err() != nil && errors.Is(err, gctx.Err())) {
				return nil
			}
			return fmt.Errorf("%s: %w", nc.name, err)
		})
	}
	err = g.Wait()
	// Every request and Get has returned by now. What still runs is a
	// pinned or detached fetch, which would hold the stop for as long as
	// the WAN takes: it stops now, and resumes from its bytes at the next
	// start.
	r.cache.Stop()
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	r.logger.Info("relay stopped")
	return nil
}

// clientStallTimeout is how long a client may leave what the relay sent
// it unread before the kernel ends its connection (lanListener): long
// beside a busy agent's pauses, short beside TCP's own 15 minutes.
var clientStallTimeout = 2 * time.Minute

// serve runs the content server on ln until ctx ends.
func (r *Relay) serve(ctx context.Context, ln net.Listener) error {
	// Requests see hardStop, not ctx: a stop first lets them finish, and
	// cuts them only when the shutdown timeout has passed.
	hardStop, cut := context.WithCancel(context.WithoutCancel(ctx))
	defer cut()
	srv := &http.Server{
		Handler:           r.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(r.logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return hardStop },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve content on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	r.logger.Info("relay stopping", "shutdown_timeout", r.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), r.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		r.logger.Warn("downloads still running at the shutdown timeout, cutting them", "err", err)
		cut()
		srv.Close()
	}
	<-served // http.ErrServerClosed
	// Close does not wait for handlers; they end quickly on their
	// cancelled context and closed connection.
	r.inflight.wait()
	return nil
}

// inflight counts handlers still running, so that Run returns after them.
type inflight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0; nil while n is 0
}

func (f *inflight) add() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		f.idle = make(chan struct{})
	}
	f.n++
}

func (f *inflight) done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n == 0 {
		close(f.idle)
		f.idle = nil
	}
}

func (f *inflight) wait() {
	f.mu.Lock()
	idle := f.idle
	f.mu.Unlock()
	if idle != nil {
		<-idle
	}
}
