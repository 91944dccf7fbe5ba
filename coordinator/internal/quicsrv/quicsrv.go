// Package quicsrv is the coordinator's QUIC endpoint for agents and relays:
// enrollment (token in, certificate out), then over mutual TLS check-ins,
// signed policy, presigned content URLs and file-server credentials, and
// the instant "revision N is out" push on the connection each member keeps
// open. It owns no state of its own beyond who is connected; the store does.
package quicsrv

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"golang.org/x/sync/semaphore"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/coordinator/internal/ca"
	"github.com/outposthq/outpost/coordinator/internal/placement"
	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/safetext"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// Presigner hands out short-lived download URLs for artifacts.
type Presigner interface {
	Presign(ctx context.Context, sha256 string, ttl time.Duration) (string, time.Time, error)
}

// CredentialIssuer mints short-lived read-only file-server credentials.
type CredentialIssuer interface {
	ReadOnlyCredentials(ctx context.Context, ttl time.Duration) (*wire.FileServerResponse, error)
}

// Config is the QUIC endpoint's part of the coordinator's configuration.
type Config struct {
	Addr        string
	PresignTTL  time.Duration
	CredsTTL    time.Duration
	IdleTimeout time.Duration
	Version     string
	// PushFanout is how many connected agents of an office hear of a new
	// revision from the coordinator; the others learn it from them by
	// gossip, and at their next check-in at the latest. 0 pushes to all.
	PushFanout int
	// KeyPhase is how long each phase of a gossip key rotation lasts; 0
	// means three of the office's check-in intervals.
	KeyPhase time.Duration
	// DirectCheckins turns the roll-up off: every member checks in itself
	// instead of through one member of its office (rollup.go).
	DirectCheckins bool
	// ResetKeyFile keeps the QUIC stateless reset key across restarts
	// (resetkey.go); empty: a new key each start.
	ResetKeyFile string
}

// Server serves members over QUIC.
type Server struct {
	// unconfirmed is, per member id, the office its last reported
	// address claimed without the coordinator's confirmation.
	unconfirmed sync.Map
	// auditLimits is each member's *rate.Limiter of audit records.
	auditLimits sync.Map
	// certIssued is when each member last got a renewed certificate
	// (time.Time): one an hour.
	certIssued sync.Map
	// enrollWait is how long an enrolment connection may wait before its
	// request (enrolWait when zero); tests that hold many lengthen it.
	enrollWait time.Duration
	cfg        Config
	ca         *ca.CA
	store      *store.Store
	files      Presigner
	creds      CredentialIssuer
	log        *slog.Logger
	m          metrics
	ready      chan struct{}
	addr       net.Addr
	mu         sync.Mutex
	conns      map[string]*quic.Conn // member id → its live connection
	pushWG     sync.WaitGroup
	// access brokers technician sessions and pushes revocations (session.go).
	access accessState
	// revList is the last revocation list, kept until a user changes.
	revList revocationCache
	// placed, if set, is told of an agent that enrolled or changed office,
	// before it hears its office's revision (SetPlacementHook).
	placed func(id string)
	// checkins verifies rolled-up check-ins, remembering the member
	// certificates it has verified (rollup.go).
	checkins *wire.CheckinVerifier
	// techConns counts the open technician connections of each source.
	techConns connLimit
	// enrollConns counts the open enrolment connections of each source.
	enrollConns connLimit
	// badHostnames rate-limits the warning for a member whose check-ins
	// report a hostname that is refused.
	badHostnames hostnameWarnings
	// catchUp moves offices' revisions past members' after a restore
	// (restored.go).
	catchUp revisionCatchUp
}

// SetPlacementHook makes the server tell f (synchronously) of every agent
// that enrolled or changed office: a policy that targets the agent by id,
// hostname or label may need a new revision of its new office.
func (s *Server) SetPlacementHook(f func(id string)) { s.placed = f }

type metrics struct {
	connected   prometheus.Gauge
	enrollments *prometheus.CounterVec
	checkins    prometheus.Counter
	requests    *prometheus.CounterVec
	pushes      *prometheus.CounterVec
	policyBytes prometheus.Counter
	peerReports prometheus.Counter
	passes      prometheus.Counter
	rollup      rollupMetrics
}

// New builds the server; Run starts it.
func New(cfg Config, authority *ca.CA, st *store.Store, files Presigner, creds CredentialIssuer, logger *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if cfg.PresignTTL == 0 {
		cfg.PresignTTL = 15 * time.Minute
	}
	if cfg.CredsTTL == 0 {
		cfg.CredsTTL = time.Hour
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = time.Minute
	}
	s := &Server{
		cfg: cfg, ca: authority, store: st, files: files, creds: creds,
		log:   logger.With("component", "quic"),
		ready: make(chan struct{}),
		conns: map[string]*quic.Conn{},
		// The CA's certificate is the coordinator's for its life.
		checkins: wire.NewCheckinVerifier(authority.Pool, maxRememberedCerts),
		m: metrics{
			connected: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "outpost_coordinator_members_connected", Help: "Agents and relays with an open QUIC connection."}),
			enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "outpost_coordinator_enrollments_total", Help: "Enrollment attempts by result."}, []string{"result"}),
			checkins: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "outpost_coordinator_checkins_total", Help: "Check-ins received."}),
			requests: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "outpost_coordinator_quic_requests_total", Help: "QUIC requests by kind and result."}, []string{"kind", "result"}),
			pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "outpost_coordinator_revision_pushes_total", Help: "Revision notices pushed to members, by result."}, []string{"result"}),
			policyBytes: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "outpost_coordinator_policy_bytes_sent_total", Help: "Bytes of signed policy sent to members."}),
			peerReports: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "outpost_coordinator_peer_reports_total", Help: "Misbehaving office peers reported by members."}),
			passes: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "outpost_coordinator_member_passes_issued_total", Help: "Member passes signed for members' gossip keys."}),
		},
	}
	s.m.rollup = newRollupMetrics()
	for _, c := range []prometheus.Collector{s.m.connected, s.m.enrollments, s.m.checkins, s.m.requests, s.m.pushes, s.m.policyBytes, s.m.peerReports, s.m.passes,
		s.m.rollup.batches, s.m.rollup.reports} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return s, nil
}

// Addr is the bound address, once Run listens.
func (s *Server) Addr() net.Addr {
	<-s.ready
	return s.addr
}

// Ready is closed once the server listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

func (s *Server) tlsConfig() *tls.Config {
	conf := func() *tls.Config {
		return &tls.Config{
			MinVersion: tls.VersionTLS13,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				c := s.ca.ServerCertificate()
				return &c, nil
			},
			ClientCAs: s.ca.Pool(),
			// Enrollment comes without a certificate; the member ALPN is
			// refused below unless one verified.
			ClientAuth: tls.VerifyClientCertIfGiven,
			NextProtos: []string{wire.ALPNMember, wire.ALPNEnroll, wire.ALPNTechnician},
		}
	}
	c := conf()
	// Made again for each connection: the CA's certificates change when
	// it renews while the coordinator runs.
	c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return conf(), nil }
	return c
}

// Run listens and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	udpAddr, err := net.ResolveUDPAddr("udp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("QUIC address %s: %w", s.cfg.Addr, err)
	}
	udp, err := net.ListenUDP("udp", udpAddr)
	if err != nil {
		return fmt.Errorf("listen QUIC on %s: %w", s.cfg.Addr, err)
	}
	// The transport is ours so that shutting down frees the port at once.
	tr := &quic.Transport{Conn: udp}
	if s.cfg.ResetKeyFile != "" {
		if tr.StatelessResetKey, err = loadResetKey(s.cfg.ResetKeyFile); err != nil {
			udp.Close()
			return err
		}
	}
	ln, err := tr.Listen(s.tlsConfig(), &quic.Config{
		MaxIdleTimeout:       s.cfg.IdleTimeout,
		HandshakeIdleTimeout: 10 * time.Second,
		MaxIncomingStreams:   64,
		KeepAlivePeriod:      s.cfg.IdleTimeout / 3,
	})
	if err != nil {
		udp.Close()
		return fmt.Errorf("listen QUIC on %s: %w", s.cfg.Addr, err)
	}
	s.addr = ln.Addr()
	close(s.ready)
	s.log.Info("QUIC listening", "addr", s.addr.String())

	var wg sync.WaitGroup
	defer func() {
		s.mu.Lock()
		for _, c := range s.conns {
			c.CloseWithError(0, "coordinator shutting down")
		}
		s.mu.Unlock()
		ln.Close()
		wg.Wait()
		s.pushWG.Wait()
		tr.Close()
		udp.Close()
	}()
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept QUIC: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, conn)
		}()
	}
}

func (s *Server) serveConn(ctx context.Context, conn *quic.Conn) {
	state := conn.ConnectionState().TLS
	switch state.NegotiatedProtocol {
	case wire.ALPNEnroll:
		release, ok := s.enrollConns.acquire(conn.RemoteAddr(), maxEnrollConnsPerSource)
		if !ok {
			s.m.enrollments.WithLabelValues("too_many_connections").Inc()
			s.log.Debug("enrolment connection refused: too many from its source", "remote", conn.RemoteAddr().String())
			conn.CloseWithError(1, "too many enrolments at once from your address: try again in a minute")
			return
		}
		defer release()
		s.serveEnroll(ctx, conn)
	case wire.ALPNTechnician:
		release, ok := s.techConns.acquire(conn.RemoteAddr(), maxTechConnsPerSource)
		if !ok {
			s.m.requests.WithLabelValues("session", "too_many_connections").Inc()
			s.log.Debug("technician connection refused: too many from its source", "remote", conn.RemoteAddr().String())
			conn.CloseWithError(1, "too many connections from your address: try again when some of your sessions have ended")
			return
		}
		defer release()
		s.serveTechnician(ctx, conn)
	case wire.ALPNMember:
		if len(state.VerifiedChains) == 0 {
			conn.CloseWithError(1, "a client certificate is required: enrol first")
			return
		}
		id := state.VerifiedChains[0][0].Subject.CommonName
		m, err := s.store.Member(id)
		if err != nil {
			s.log.Warn("connection from unknown member refused", "member", id, "remote", conn.RemoteAddr().String())
			conn.CloseWithError(wire.CloseNotEnrolled, "this member is not enrolled any more")
			return
		}
		s.serveMember(ctx, conn, m, state.VerifiedChains[0][0])
	default:
		conn.CloseWithError(1, "unknown protocol")
	}
}

func (s *Server) serveEnroll(ctx context.Context, conn *quic.Conn) {
	defer conn.CloseWithError(0, "")
	wait := s.enrollWait
	if wait == 0 {
		wait = enrolWait
	}
	sctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	str, err := conn.AcceptStream(sctx)
	if err != nil {
		return
	}
	defer str.Close()
	str.SetDeadline(time.Now().Add(30 * time.Second))
	var req wire.Request
	if err := wire.ReadMsgMax(str, &req, maxEnrollRequest); err != nil {
		s.m.enrollments.WithLabelValues("bad_request").Inc()
		if errors.Is(err, wire.ErrTooLarge) {
			// Refused unread, and the sender stopped at once: the reason
			// goes with the connection's close, which the sender sees
			// whatever it was doing.
			s.log.Debug("enrolment refused: request too large", "remote", conn.RemoteAddr().String(), "err", err)
			conn.CloseWithError(1, fmt.Sprintf("enrolment request larger than the %d bytes allowed: send a token, a hostname and a certificate request only", maxEnrollRequest))
		}
		return
	}
	resp := s.enroll(req.GetEnroll(), remoteIP(conn.RemoteAddr()))
	if err := wire.WriteMsg(str, resp); err != nil {
		s.log.Warn("answer enrollment", "err", err)
		return
	}
	str.Close()
	// Closing the connection now would drop the answer in flight: the
	// member closes it once it has read it.
	select {
	case <-conn.Context().Done():
	case <-sctx.Done():
	}
}

func (s *Server) enroll(req *wire.EnrollRequest, remote string) *wire.Response {
	if req == nil {
		s.m.enrollments.WithLabelValues("bad_request").Inc()
		return wire.Errorf(wire.Error_CODE_BAD_REQUEST, "expected an enrollment request")
	}
	hostname := strings.TrimSpace(req.GetHostname())
	if !validHostname(hostname) {
		s.m.enrollments.WithLabelValues("bad_request").Inc()
		return wire.Errorf(wire.Error_CODE_BAD_REQUEST, "hostname %q is not valid", hostname)
	}
	role := wire.RoleName(req.GetRole())
	if role == "" {
		s.m.enrollments.WithLabelValues("bad_request").Inc()
		return wire.Errorf(wire.Error_CODE_BAD_REQUEST, "role must be agent or relay")
	}
	sum := sha256.Sum256([]byte(req.GetToken()))
	tokenHash, keyHash := hex.EncodeToString(sum[:]), csrKeyHash(req.GetCsr())
	var certDER []byte
	var tokenID, tokenOffice string
	// The same key with the same token: a member whose answer was lost
	// retries. It gets its member again (a fresh certificate for the same
	// id), and no use of the token is spent.
	if keyHash != "" {
		if m, office, err := s.store.EnrollAgain(tokenHash, keyHash); err == nil && m.Role == role {
			der, err := s.ca.IssueMember(req.GetCsr(), m.ID)
			if err != nil {
				s.m.enrollments.WithLabelValues("refused").Inc()
				return wire.Errorf(wire.Error_CODE_DENIED, "enrollment refused: %s", err)
			}
			s.m.enrollments.WithLabelValues("again").Inc()
			s.log.Info("member enrolled again (its first answer was lost)", "member", m.ID, "hostname", m.Hostname, "office", office.Name)
			// The first answer may have been lost before its placement
			// was published; placing again changes nothing if it was.
			if s.placed != nil && role == "agent" {
				s.placed(m.ID)
			}
			return s.enrolled(m, office, der, req.GetGossipKey())
		}
	}
	m, office, err := s.store.Enroll(tokenHash, time.Now(), func(t store.Token, o store.Office) (store.Member, error) {
		if t.Role != role {
			return store.Member{}, &store.EnrollError{Reason: fmt.Sprintf("enrollment token %s enrols a %s, not a %s: ask an admin for a %s token", t.ID, t.Role, role, role)}
		}
		id := memberID(role)
		der, err := s.ca.IssueMember(req.GetCsr(), id)
		if err != nil {
			return store.Member{}, &store.EnrollError{Reason: err.Error()}
		}
		certDER, tokenID, tokenOffice = der, t.ID, o.Name
		now := time.Now()
		return store.Member{ID: id, Hostname: hostname, Office: o.Name, Home: o.Name, Role: role, Enrolled: now, LastSeen: now, Address: remote, Addresses: []string{remote},
			KeyHash: keyHash, Token: t.ID}, nil
	})
	var ee *store.EnrollError
	if errors.As(err, &ee) {
		s.m.enrollments.WithLabelValues("refused").Inc()
		s.log.Warn("enrollment refused", "hostname", hostname, "remote", remote, "reason", ee.Reason)
		return wire.Errorf(wire.Error_CODE_DENIED, "enrollment refused: %s", ee.Reason)
	}
	if err != nil {
		s.m.enrollments.WithLabelValues("error").Inc()
		s.log.Error("enrollment failed", "hostname", hostname, "err", err)
		return wire.Errorf(wire.Error_CODE_INTERNAL, "enrollment failed on the coordinator; try again later")
	}
	s.m.enrollments.WithLabelValues("ok").Inc()
	s.log.Info("member enrolled", "member", m.ID, "hostname", hostname, "office", office.Name, "role", role)
	s.auditEnrolment(m, office.Name, tokenID, tokenOffice, remote)
	if s.placed != nil && role == "agent" {
		s.placed(m.ID)
	}
	return s.enrolled(m, office, certDER, req.GetGossipKey())
}

// auditEnrolment records who joined the fleet, with which token, and
// where: a computer named before it enrolled goes to its office whatever
// token it used (store.steerPreregistered), so the record says when the
// token was another office's: a token that leaked from one office
// reaches the computers named for another.
func (s *Server) auditEnrolment(m *store.Member, office, tokenID, tokenOffice, remote string) {
	v := s.verifier()
	if v == nil {
		return
	}
	detail := fmt.Sprintf("%s %s enrolled into office %s with token %s", m.Role, safetext.Escape(m.Hostname), office, tokenID)
	if tokenOffice != office {
		detail += fmt.Sprintf(" of office %s: its hostname was named for %s before it enrolled", tokenOffice, office)
	}
	v.Audit(store.AuditEvent{Actor: "token " + tokenID, Action: "member.enrol", Target: m.Role + " " + m.ID, Detail: detail, Allowed: true, Remote: remote})
}

// enrolled is the answer to an enrollment.
func (s *Server) enrolled(m *store.Member, office *store.Office, certDER, gossipKey []byte) *wire.Response {
	info, err := s.officeInfo(office, m.ID)
	if err == nil && m.Role == "agent" {
		info.Revision = s.agentRevision(office, info.Revision)
	}
	if err != nil {
		return wire.Errorf(wire.Error_CODE_INTERNAL, "enrollment failed on the coordinator; try again later")
	}
	return &wire.Response{Body: &wire.Response_Enroll{Enroll: &wire.EnrollResponse{
		MemberId:       m.ID,
		Office:         office.Name,
		Certificate:    certDER,
		CaCertificate:  s.ca.CertDER(),
		CaCertificates: s.ca.Chain(),
		PolicyKey:      []byte(s.ca.PolicyKey().Public().(ed25519.PublicKey)),
		GossipKey:      office.GossipKey,
		OfficeInfo:     info,
		MemberPass:     s.pass(m, gossipKey),
	}}}
}

// pass issues m a member pass for its gossip key, nil when the key is
// not one (an older member that asks for none).
func (s *Server) pass(m *store.Member, gossipKey []byte) *wire.SignedMemberPass {
	if len(gossipKey) != ed25519.PublicKeySize {
		return nil
	}
	sp, err := wire.SignPass(s.ca.PolicyKey(), &wire.MemberPass{MemberId: m.ID, Role: wire.RoleNamed(m.Role),
		GossipKey: gossipKey, NotAfterUnix: wire.PassExpiry(time.Now()).Unix()})
	if err != nil {
		s.log.Error("member pass", "member", m.ID, "err", err)
		return nil
	}
	s.m.passes.Inc()
	return sp
}

// csrKeyHash is the SHA-256 of the public key a certificate request is
// for, "" when it does not parse (enrolment then refuses it).
func csrKeyHash(der []byte) string {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

func memberID(role string) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	prefix := "ag-"
	if role == "relay" {
		prefix = "rl-"
	}
	return prefix + hex.EncodeToString(b[:])
}

// validHostname says whether a member may go by h (already trimmed), at
// enrollment and at check-in: 1 to 253 printable ASCII characters, no
// spaces.
func validHostname(h string) bool {
	return h != "" && len(h) <= 253 && !strings.ContainsFunc(h, func(r rune) bool { return r < 0x21 || r > 0x7e }) &&
		!idShaped.MatchString(h)
}

// idShaped is a name technicians would take for a member id, or the start
// of one (store.MatchMembers matches hostnames before id prefixes): a host
// named so could stand in for another.
var idShaped = regexp.MustCompile(`(?i)^(ag|rl)-[0-9a-f]{4,}$`)

// hostnameWarnEvery is how often a member whose check-ins keep reporting a
// hostname that is refused is logged at warn level; at debug in between.
const hostnameWarnEvery = 24 * time.Hour

// hostnameWarnings remembers when each member was last warned about.
type hostnameWarnings struct {
	mu   sync.Mutex
	last map[string]time.Time // member id → last warning
}

// due says whether member id is to be warned about now, and if so counts
// the warning as given.
func (w *hostnameWarnings) due(id string, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if at, ok := w.last[id]; ok && now.Sub(at) < hostnameWarnEvery {
		return false
	}
	if w.last == nil {
		w.last = map[string]time.Time{}
	}
	if len(w.last) >= 4096 {
		// Members removed since: forget the warnings that are over.
		for k, at := range w.last {
			if now.Sub(at) >= hostnameWarnEvery {
				delete(w.last, k)
			}
		}
	}
	w.last[id] = now
	return true
}

// maxTechConnsPerSource bounds the technician connections one source (an
// IPv4 address, an IPv6 /64) holds at once. They are unauthenticated until
// a session's token verifies, and each may have 64 streams waiting for
// their SessionOpen. The CLI opens one per command: technicians of an
// office behind one NAT, a script running a command on many hosts at
// once, stay well below.
const maxTechConnsPerSource = 64

// maxEnrollRequest bounds an enrolment request, read before anything of
// its sender is known: with maxEnrollConnsPerSource connections, what one
// source makes the coordinator hold. A real request (a token, a hostname
// of at most 253 bytes, a P-256 certificate request naming it) is well
// under 1 KiB; the rest is margin for a larger key.
const maxEnrollRequest = 16 << 10

// maxEnrollConnsPerSource bounds the enrolment connections one source
// holds at once. They are unauthenticated until the token checks, and one
// may sit for 30 s before its request. A whole office enrolling behind
// one NAT takes a second or so per member and retries when refused, so
// even a large office's first morning stays well below.
const maxEnrollConnsPerSource = 128

// enrolWait is how long an enrolment connection may sit before its
// request comes.
const enrolWait = 30 * time.Second

// connLimit counts open connections by source.
type connLimit struct {
	mu sync.Mutex
	n  map[string]int
}

// acquire counts a connection from a, unless its source already has
// limit; release uncounts it.
func (l *connLimit) acquire(a net.Addr, limit int) (release func(), ok bool) {
	key := sourceKey(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[key] >= limit {
		return nil, false
	}
	if l.n == nil {
		l.n = map[string]int{}
	}
	l.n[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.n[key]--; l.n[key] <= 0 {
				delete(l.n, key)
			}
		})
	}, true
}

// sourceKey is the source a connection limit counts a by: its IP address,
// the /64 of an IPv6 one (which one client usually has whole).
func sourceKey(a net.Addr) string {
	host := remoteIP(a)
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		ip = ip.Mask(net.CIDRMask(64, 128))
	}
	return ip.String()
}

func remoteIP(a net.Addr) string {
	if u, ok := a.(*net.UDPAddr); ok {
		return u.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// officeInfo is what a member learns of its office at enrollment and at
// every check-in.
func (s *Server) officeInfo(o *store.Office, self string) (*wire.OfficeInfo, error) {
	info, err := s.baseInfo(o)
	if err != nil {
		return nil, err
	}
	// From the store's summary of the office's members: decoding them
	// cost each check-in its office's size.
	stale := time.Now().Add(-3 * o.CheckinInterval)
	peers, err := s.store.GossipPeers(o.Name, stale)
	if err != nil {
		return nil, err
	}
	info.GossipSeeds = gossipSeeds(peers, self, stale)
	return info, nil
}

// gossipSeeds are the members a member is told to join: the two heard
// from most recently, so that a joiner reaches a live one, and three more
// at random among those heard from since stale. The random ones join up
// groups of members that found only each other (a room of computers
// enrolled in the same minute learns of the few enrolled just before);
// a handful is enough for gossip to do the rest.
func gossipSeeds(members []store.GossipPeer, self string, stale time.Time) []string {
	const recent, random = 2, 3
	live := make([]store.GossipPeer, 0, len(members))
	for _, m := range members {
		if m.ID != self && m.GossipAddr != "" && !m.LastSeen.Before(stale) {
			live = append(live, m)
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i].LastSeen.After(live[j].LastSeen) })
	var seeds []string
	for _, m := range live[:min(recent, len(live))] {
		seeds = append(seeds, m.GossipAddr)
	}
	rest := live[min(recent, len(live)):]
	for k := 0; k < random && k < len(rest); k++ {
		j := k + mrand.IntN(len(rest)-k)
		rest[k], rest[j] = rest[j], rest[k]
		seeds = append(seeds, rest[k].GossipAddr)
	}
	return seeds
}

// baseInfo is the office information that is the same for every member.
func (s *Server) baseInfo(o *store.Office) (*wire.OfficeInfo, error) {
	info := &wire.OfficeInfo{
		Name:                   o.Name,
		Mode:                   wire.Mode_MODE_DIRECT,
		CheckinIntervalSeconds: int64(o.CheckinInterval / time.Second),
		TimeZone:               o.TimeZone,
	}
	switch o.Mode {
	case "relay":
		info.Mode = wire.Mode_MODE_RELAY
	case "distribution":
		info.Mode = wire.Mode_MODE_DISTRIBUTION
	}
	info.Relays = o.RelayURLs()
	info.AllowPlainHttp = o.PlainHTTPAllowed()
	if p, err := s.store.Policy(o.Name); err == nil {
		info.Revision = p.Revision
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	return info, nil
}

func (s *Server) serveMember(ctx context.Context, conn *quic.Conn, m *store.Member, cert *x509.Certificate) {
	id := m.ID
	s.mu.Lock()
	if old, ok := s.conns[id]; ok {
		old.CloseWithError(0, "replaced by a newer connection")
	} else {
		s.m.connected.Inc()
	}
	s.conns[id] = conn
	s.mu.Unlock()
	s.log.Debug("member connected", "member", id, "remote", conn.RemoteAddr().String())
	defer func() {
		// Tell the member at once, whether we are shutting down or it went
		// away, so it redials instead of waiting for an idle timeout.
		conn.CloseWithError(0, "closing")
		s.mu.Lock()
		if s.conns[id] == conn {
			delete(s.conns, id)
			s.m.connected.Dec()
		}
		s.mu.Unlock()
	}()
	// A removal between serveConn's look and the registration above found
	// no connection to close: look again, now that it would.
	if _, err := s.store.Member(id); err != nil {
		conn.CloseWithError(wire.CloseNotEnrolled, "this member is not enrolled any more")
		return
	}

	remote := remoteIP(conn.RemoteAddr())
	budget := semaphore.NewWeighted(memberFrameBudget)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		str, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer str.Close()
			str.SetDeadline(time.Now().Add(30 * time.Second))
			var req wire.Request
			release, err := readMemberRequest(str, budget, &req)
			if errors.Is(err, errBusy) {
				s.m.requests.WithLabelValues("unknown", "busy").Inc()
				str.CancelRead(1)
				wire.WriteMsg(str, wire.Errorf(wire.Error_CODE_DENIED, "%s", err))
				return
			}
			if err != nil {
				s.m.requests.WithLabelValues("unknown", "bad_request").Inc()
				str.CancelRead(1)
				if errors.Is(err, wire.ErrDecodeCost) {
					s.log.Warn("member request refused", "member", id, "err", err)
					wire.WriteMsg(str, wire.Errorf(wire.Error_CODE_BAD_REQUEST, "%s", err))
				}
				return
			}
			if at := req.GetSessionAttach(); at != nil {
				release()
				s.attach(ctx, id, str, at)
				return
			}
			resp := s.handle(ctx, id, remote, cert, &req)
			release()
			if err := wire.WriteMsg(str, resp); err != nil {
				s.log.Debug("answer member", "member", id, "err", err)
			}
			// The request was read by its length. A member may close its
			// side only once it has the answer, and a stream whose end is
			// never read stays counted against the member's open streams
			// (64): its 65th request on the connection would wait for good.
			str.CancelRead(0)
		}()
	}
}

// A member may have 64 streams open, and each request may be up to
// wire.MaxMessageSize: read all at once, one member (a stolen laptop
// keeps its certificate) would pin 512 MiB of the coordinator. Requests
// are small but for a roll-up member's check-in, which carries its
// office's, one at a time. So the requests over smallFrame that one
// connection has being read and handled at once share memberFrameBudget;
// one that does not fit is refused at once, unread, and sent again by its
// member later. Small ones are read at once.
//
// Refused, not kept waiting: what a waiting stream was sent before it is
// read holds on to the connection's flow-control window, and a few of
// them would stall every stream of the connection, the ones being read
// and the small ones too. A refused stream's bytes are given back.
const (
	smallFrame        = 64 << 10
	memberFrameBudget = 2 * wire.MaxMessageSize
)

// errBusy refuses a request that does not fit in its connection's budget.
var errBusy = errors.New("too many large requests at once on this connection: send it again once one is answered")

// readMemberRequest reads one request of a member's into req. One larger
// than smallFrame takes its size from budget first (errBusy when it does
// not fit); release gives it back.
func readMemberRequest(str *quic.Stream, budget *semaphore.Weighted, req *wire.Request) (release func(), err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(str, hdr[:]); err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	release = func() {}
	// Larger than MaxMessageSize: ReadMsg refuses it below, unread.
	if n := int64(binary.BigEndian.Uint32(hdr[:])); n > smallFrame && n <= wire.MaxMessageSize {
		if !budget.TryAcquire(n) {
			return nil, errBusy
		}
		release = sync.OnceFunc(func() { budget.Release(n) })
	}
	if err := wire.ReadMsg(io.MultiReader(bytes.NewReader(hdr[:]), str), req); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// handle answers one request of member id, connected from remote with
// cert.
func (s *Server) handle(ctx context.Context, id, remote string, cert *x509.Certificate, req *wire.Request) *wire.Response {
	kind, resp := "unknown", (*wire.Response)(nil)
	switch b := req.GetBody().(type) {
	case *wire.Request_Checkin:
		kind, resp = "checkin", s.checkin(id, remote, b.Checkin)
	case *wire.Request_Policy:
		kind, resp = "policy", s.policy(id, b.Policy)
	case *wire.Request_Presign:
		kind, resp = "presign", s.presign(ctx, id, b.Presign)
	case *wire.Request_FileServer:
		kind, resp = "file_server", s.fileServer(ctx, id)
	case *wire.Request_ServingCert:
		kind, resp = "serving_cert", s.servingCert(id, b.ServingCert)
	case *wire.Request_MemberCert:
		kind, resp = "member_cert", s.memberCert(id, cert, b.MemberCert)
	case *wire.Request_Audit:
		kind, resp = "audit", s.storeAudit(id, b.Audit)
	case *wire.Request_RevocationsRequest:
		// A host about to take a direct session asks for the list first.
		kind, resp = "revocations", &wire.Response{Body: &wire.Response_Revocations{Revocations: s.revocations()}}
	default:
		resp = wire.Errorf(wire.Error_CODE_BAD_REQUEST, "unknown request")
	}
	result := "ok"
	if e := resp.GetError(); e != nil {
		result = strings.ToLower(strings.TrimPrefix(e.GetCode().String(), "CODE_"))
	}
	s.m.requests.WithLabelValues(kind, result).Inc()
	return resp
}

const maxText = 1024

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func tooLarge(req *wire.CheckinRequest) bool { return wire.CheckinTooLarge(req) }

func (s *Server) checkin(id, remote string, req *wire.CheckinRequest) *wire.Response {
	s.m.checkins.Inc()
	if tooLarge(req) || len(req.GetRollup()) > maxRollup {
		return wire.Errorf(wire.Error_CODE_BAD_REQUEST, "check-in too large")
	}
	now := time.Now()
	// Shared, read only: every check-in reads every office (placement).
	offices, err := s.store.OfficesReadOnly()
	if err != nil {
		s.log.Error("check-in", "member", id, "err", err)
		return wire.Errorf(wire.Error_CODE_INTERNAL, "check-in failed on the coordinator")
	}
	m, err := s.record(id, remote, time.Time{}, req, offices, now)
	if err != nil {
		s.log.Error("check-in", "member", id, "err", err)
		return wire.Errorf(wire.Error_CODE_INTERNAL, "check-in failed on the coordinator")
	}
	o, err := s.store.Office(m.Office)
	if err != nil {
		return wire.Errorf(wire.Error_CODE_NOT_FOUND, "office %s no longer exists", m.Office)
	}
	if o.Rotation != "" {
		phase := s.cfg.KeyPhase
		if phase == 0 {
			// Two intervals for every member to check in, one more for a
			// member that reports through the roll-up to hear that it
			// should check in directly.
			phase = 3 * o.CheckinInterval
		}
		if changed, err := s.store.AdvanceKeyRotation(o.Name, phase, now); err != nil {
			s.log.Error("gossip key rotation", "office", o.Name, "err", err)
		} else if changed {
			if o, err = s.store.Office(m.Office); err != nil {
				return wire.Errorf(wire.Error_CODE_INTERNAL, "check-in failed on the coordinator")
			}
			s.log.Info("gossip key rotation", "office", o.Name, "phase", o.Rotation)
		}
	}
	if m.Role == "relay" {
		s.maybeRelease(o, m)
	}
	info, err := s.officeInfo(o, id)
	if err != nil {
		return wire.Errorf(wire.Error_CODE_INTERNAL, "check-in failed on the coordinator")
	}
	if m.Role == "agent" {
		info.Revision = s.agentRevision(o, info.Revision)
	}
	s.memberInfo(info, o, m)
	resp := &wire.CheckinResponse{Office: info, ServerUnix: now.Unix(), AckedSeq: m.AckedSeq, Revocations: s.revocations(),
		MemberPass: s.pass(m, req.GetGossipKey())}
	if s.caBehind(req) {
		resp.CaCertificates = s.ca.Chain()
	}
	if m.Role == "relay" {
		resp.RemovedMembers = s.removedMembers(req, now)
	}
	if len(req.GetRollup()) > 0 {
		resp.RollupAcks = s.rollup(m, o, req.GetRollup(), offices, now)
	}
	return &wire.Response{Body: &wire.Response_Checkin{Checkin: resp}}
}

// caBehind tells whether the member that checks in holds an older
// certificate of the CA than its current one (the CA renewed it): a
// direct check-in's answer brings it the CA's certificates. One that does
// not say is of a version that could not take them.
func (s *Server) caBehind(req *wire.CheckinRequest) bool {
	fp := req.GetCaFingerprint()
	return fp != "" && fp != s.ca.Fingerprint()
}

// removedMembers is the list of removed members for a relay whose
// version of it differs from the store's (one restored from a backup may
// be older: any difference is news), nil when it holds the current one.
// A removed member's certificate still verifies under the CA; relays,
// which check content requests against the CA alone, refuse those listed.
func (s *Server) removedMembers(req *wire.CheckinRequest, now time.Time) *wire.RemovedMembers {
	v, err := s.store.RemovedMembersVersion()
	if err != nil || v == req.GetRemovedMembersVersion() {
		return nil
	}
	v, ids, err := s.store.RemovedMembers(now)
	if err != nil {
		s.log.Error("list removed members for a relay", "err", err)
		return nil
	}
	return &wire.RemovedMembers{Version: v, Ids: ids}
}

// memberInfo completes the office information for one member: the keys,
// roaming, the roll-up.
func (s *Server) memberInfo(info *wire.OfficeInfo, o *store.Office, m *store.Member) {
	info.GossipKey, info.GossipKeys = o.GossipKey, o.GossipKeys
	info.Rollup = !s.cfg.DirectCheckins && m.Role == "agent"
	if m.Roaming {
		// Outside every office: straight to the coordinator and the file
		// server, no relays, no gossip.
		info.Roaming, info.Rollup = true, false
		info.Mode = wire.Mode_MODE_DIRECT
		info.Relays, info.GossipSeeds, info.GossipKey, info.GossipKeys = nil, nil, nil, nil
	}
}

// record keeps what a member says of itself at a check-in, direct
// (remote is its address, signed is zero) or rolled up (remote is empty,
// signed is when the member signed it). A rolled-up check-in older than
// what was kept of the member is refused with a staleError (notNewer),
// and nothing of it kept. An agent that changed office or hostname is placed again (its
// office is re-signed if it now needs a policy of its own) before any
// answer names a revision.
func (s *Server) record(id, remote string, signed time.Time, req *wire.CheckinRequest, offices []store.Office, now time.Time) (*store.Member, error) {
	// A hostname enrollment would refuse (control characters, spaces, too
	// long) is not taken: the member keeps the one it has, and its
	// check-in the rest.
	newHostname, badHostname := strings.TrimSpace(req.GetHostname()), false
	if newHostname != "" && !validHostname(newHostname) {
		newHostname, badHostname = "", true
	}
	moved := false
	m, err := s.store.UpdateMemberIf(id, func(m *store.Member) error {
		if signed.IsZero() {
			m.DirectAt = now
		} else {
			if why := notNewer(m, signed, req); why != "" {
				return &staleError{why: why}
			}
			m.RolledUpSigned = signed
		}
		before, hostname := m.Office, m.Hostname
		m.LastSeen = now
		if remote != "" {
			m.Address = remote
		}
		if newHostname != "" {
			m.Hostname = newHostname
		}
		m.Addresses = nil
		for _, a := range req.GetAddresses() {
			if ip := net.ParseIP(a); ip != nil {
				m.Addresses = append(m.Addresses, ip.String())
			}
		}
		m.GossipAddr = validHostPort(req.GetGossipAddress())
		m.ServeURL = clip(req.GetServeUrl(), maxText)
		m.SessionAddr = validHostPort(req.GetSessionAddress())
		m.Revision = req.GetRevision()
		m.Version = clip(req.GetVersion(), 64)
		// The new executable's own words are in it.
		m.UpgradeProblem = safetext.Field(req.GetUpgradeProblem(), maxText)
		m.LastHang = safetext.Field(req.GetLastHang(), maxText)
		m.CAFingerprint = ""
		if fp, err := tlsutil.NormalizeFingerprint(req.GetCaFingerprint()); err == nil {
			m.CAFingerprint = fp
		}
		if r := req.GetReport(); r != nil {
			m.Report = reportFromWire(r)
		}
		m.Backlog = nil
		for _, r := range req.GetBacklog() {
			m.Backlog = append(m.Backlog, *reportFromWire(r))
		}
		if st := req.GetStaging(); st != nil && m.Role == "relay" {
			m.Staging = stagingFromWire(st, now)
		}
		s.place(m, offices)
		// A new hostname counts as a move: policies may target hostnames.
		moved = m.Office != before || m.Hostname != hostname
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Told once the check-in is kept: a replayed one does not tell again.
	for _, r := range req.GetPeerReports() {
		s.m.peerReports.Inc()
		s.log.Warn("member reports an office peer", "member", id, "report", clip(r, maxText))
	}
	if badHostname {
		level := slog.LevelDebug
		if s.badHostnames.due(id, now) {
			level = slog.LevelWarn
		}
		s.log.Log(context.Background(), level, "member reports a hostname that is not valid; it keeps the one it has",
			"member", id, "hostname", m.Hostname, "reported", clip(req.GetHostname(), 300))
	}
	if moved && s.placed != nil && m.Role == "agent" {
		s.placed(m.ID)
	}
	s.caughtUp(m, now)
	s.keepArtifactBytes(id, m.Office, req.GetArtifactBytes(), now)
	return m, nil
}

func validHostPort(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil || net.ParseIP(host) == nil || port == "" || len(s) > 64 {
		return ""
	}
	return s
}

// maxRebootItems bounds the items a report may name as waiting for a
// reboot (the agent sends at most 100).
const maxRebootItems = 100

func reportFromWire(r *wire.Report) *store.Report {
	out := &store.Report{Revision: r.GetRevision(), At: time.Unix(r.GetAtUnix(), 0).UTC(), Seq: r.GetSeq()}
	for _, id := range r.GetRebootItems()[:min(len(r.GetRebootItems()), maxRebootItems)] {
		out.RebootItems = append(out.RebootItems, clip(id, 200))
	}
	if len(out.RebootItems) > 0 && r.GetRebootSinceUnix() > 0 {
		out.RebootSince = time.Unix(r.GetRebootSinceUnix(), 0).UTC()
	}
	for _, it := range r.GetItems() {
		status := strings.ToLower(strings.TrimPrefix(it.GetStatus().String(), "STATUS_"))
		out.Items = append(out.Items, store.ItemStatus{
			ID: clip(it.GetId(), 200), Kind: clip(it.GetKind(), 32), Status: status,
			Message: clip(it.GetMessage(), maxText), Changed: it.GetChanged(),
			At: time.Unix(it.GetAtUnix(), 0).UTC(),
		})
	}
	return out
}

func (s *Server) policy(id string, req *wire.PolicyRequest) *wire.Response {
	m, err := s.store.Member(id)
	if err != nil {
		return wire.Errorf(wire.Error_CODE_UNAUTHENTICATED, "this member is not enrolled any more")
	}
	sp, rev, err := s.signedFor(m)
	if err != nil {
		return wire.Errorf(wire.Error_CODE_INTERNAL, "%s", err.Error())
	}
	if sp == nil || rev <= req.GetHaveRevision() {
		return &wire.Response{Body: &wire.Response_Policy{Policy: &wire.PolicyResponse{}}}
	}
	s.m.policyBytes.Add(float64(proto.Size(sp)))
	return &wire.Response{Body: &wire.Response_Policy{Policy: &wire.PolicyResponse{Policy: sp}}}
}

// signedFor is the signed policy member m is to run now and its revision:
// its own variant or its office's, the released revision in a
// distribution office; nil when there is none yet. Its errors are fit for
// the member.
func (s *Server) signedFor(m *store.Member) (*wire.SignedPolicy, uint64, error) {
	p, err := s.store.Policy(m.Office)
	if err == nil && m.Role == "agent" {
		p, err = s.agentPolicy(m, p)
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, errors.New("policy lookup failed on the coordinator")
	}
	signed, err := s.memberPolicy(m, p)
	if err != nil {
		s.log.Error("policy variant lookup", "member", m.ID, "err", err)
		return nil, 0, errors.New("policy lookup failed on the coordinator")
	}
	var sp wire.SignedPolicy
	if err := wire.Unmarshal(signed, &sp); err != nil {
		return nil, 0, errors.New("stored policy is damaged")
	}
	return &sp, p.Revision, nil
}

// memberPolicy is the signed policy that is m's at its office's current
// revision p: its own variant when it has one (agents only), else the
// office's.
func (s *Server) memberPolicy(m *store.Member, p *store.Policy) ([]byte, error) {
	if m.Role != "agent" {
		return p.Signed, nil
	}
	v, err := s.store.Variant(m.Office, m.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return p.Signed, nil
	case err != nil:
		return nil, err
	case v.Revision != p.Revision:
		return p.Signed, nil // left from an older revision; the office's is current
	}
	return v.Signed, nil
}

// presign hands out a download URL only for content the member's own
// office policy names: a member cannot use the coordinator to read
// arbitrary objects.
func (s *Server) presign(ctx context.Context, id string, req *wire.PresignRequest) *wire.Response {
	if s.files == nil {
		return wire.Errorf(wire.Error_CODE_NOT_FOUND, "no file server is configured")
	}
	m, err := s.store.Member(id)
	if err != nil {
		return wire.Errorf(wire.Error_CODE_UNAUTHENTICATED, "this member is not enrolled any more")
	}
	if !s.memberNames(m, req.GetSha256()) {
		return wire.Errorf(wire.Error_CODE_DENIED, "artifact %s is not named by the policy of office %s", clip(req.GetSha256(), 64), m.Office)
	}
	url, exp, err := s.files.Presign(ctx, req.GetSha256(), s.cfg.PresignTTL)
	if err != nil {
		s.log.Error("presign", "sha256", req.GetSha256(), "err", err)
		return wire.Errorf(wire.Error_CODE_INTERNAL, "could not presign the artifact")
	}
	return &wire.Response{Body: &wire.Response_Presign{Presign: &wire.PresignResponse{Url: url, ExpiresUnix: exp.Unix()}}}
}

// memberNames tells whether the policy m runs names the artifact.
func (s *Server) memberNames(m *store.Member, sha string) bool {
	p, err := s.store.Policy(m.Office)
	if err != nil {
		return false
	}
	signed, err := s.memberPolicy(m, p)
	if err != nil {
		return false
	}
	// Agents of a distribution office may still work on the released
	// revision, which can name what the newest no longer does.
	return signedNames(signed, sha) || s.releasedNames(m, sha)
}

// signedNames says whether a stored signed policy names the artifact.
func signedNames(signed []byte, sha string) bool {
	var sp wire.SignedPolicy
	if wire.Unmarshal(signed, &sp) != nil {
		return false
	}
	var pol wire.Policy
	if wire.Unmarshal(sp.GetPolicy(), &pol) != nil {
		return false
	}
	for _, it := range pol.GetItems() {
		if it.GetArtifact().GetSha256() == sha {
			return true
		}
	}
	return false
}

func (s *Server) fileServer(ctx context.Context, id string) *wire.Response {
	m, err := s.store.Member(id)
	if err != nil {
		return wire.Errorf(wire.Error_CODE_UNAUTHENTICATED, "this member is not enrolled any more")
	}
	if m.Role != "relay" {
		return wire.Errorf(wire.Error_CODE_DENIED, "only relays read the file server directly")
	}
	if s.creds == nil {
		return wire.Errorf(wire.Error_CODE_NOT_FOUND, "no file server is configured")
	}
	c, err := s.creds.ReadOnlyCredentials(ctx, s.cfg.CredsTTL)
	if err != nil {
		s.log.Error("file-server credentials", "err", err)
		return wire.Errorf(wire.Error_CODE_INTERNAL, "could not issue file-server credentials")
	}
	return &wire.Response{Body: &wire.Response_FileServer{FileServer: c}}
}

// NotifyRevision pushes "revision N is out" to every connected member of
// office, without waiting: members that miss it learn at check-in.
func (s *Server) NotifyRevision(office string, revision uint64) {
	s.NotifyRevisions(map[string]uint64{office: revision})
}

// NotifyRevisions tells several offices of their new revisions together:
// every office's members are looked up before the first push starts, so a
// change for the whole fleet starts in every office at once. (Told one
// office after another, the first offices' rollouts took the CPU the
// lookups for the rest needed: at 2,000 agents the last office was told
// 2.3 s after the first.)
func (s *Server) NotifyRevisions(revs map[string]uint64) {
	type told struct {
		office   string
		revision uint64
		members  []store.Member
		own      []string
	}
	var all []told
	for office, revision := range revs {
		if s.holdBack(office, revision) {
			continue
		}
		members, err := s.store.Members(office)
		if err != nil {
			s.log.Error("push revision", "office", office, "err", err)
			continue
		}
		// Members with a policy of their own cannot take it from peers:
		// each is told itself, and none of them counts toward the fanout.
		own, err := s.store.VariantMembers(office)
		if err != nil {
			s.log.Error("push revision", "office", office, "err", err)
		}
		all = append(all, told{office, revision, members, own})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range all {
		s.pushRevisionLocked(t.office, t.revision, t.members, t.own)
	}
}

func (s *Server) pushRevisionLocked(office string, revision uint64, members []store.Member, own []string) {
	// Members come from the store in random enough order (map iteration
	// in bolt is by id, which is random), so the few told vary.
	pushed := 0
	for _, m := range members {
		conn, ok := s.conns[m.ID]
		// Roaming agents take part in no gossip: each is told itself.
		_, hasOwn := slices.BinarySearch(own, m.ID) // own is sorted
		alone := m.Roaming || hasOwn
		if !ok || m.Role != "agent" || (s.cfg.PushFanout > 0 && pushed >= s.cfg.PushFanout && !alone) {
			continue
		}
		if !alone {
			pushed++
		}
		s.pushWG.Add(1)
		go func() {
			defer s.pushWG.Done()
			ctx, cancel := context.WithTimeout(conn.Context(), 10*time.Second)
			defer cancel()
			if err := push(ctx, conn, s.revisionNotice(&m, office, revision)); err != nil {
				s.m.pushes.WithLabelValues("error").Inc()
				s.log.Debug("push revision", "member", m.ID, "err", err)
				return
			}
			s.m.pushes.WithLabelValues("ok").Inc()
		}()
	}
}

// revisionNotice tells m of revision, with the signed policy that is m's
// at it when there is one: the member then need not ask for it.
func (s *Server) revisionNotice(m *store.Member, office string, revision uint64) *wire.Request {
	n := &wire.RevisionNotice{Office: office, Revision: revision}
	if revision > 0 {
		if sp, rev, err := s.signedFor(m); err == nil && rev == revision {
			n.Policy = sp
			s.m.policyBytes.Add(float64(proto.Size(sp)))
		}
	}
	return &wire.Request{Body: &wire.Request_RevisionNotice{RevisionNotice: n}}
}

func push(ctx context.Context, conn *quic.Conn, notice *wire.Request) error {
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	defer str.Close()
	if d, ok := ctx.Deadline(); ok {
		str.SetDeadline(d)
	}
	if err := wire.WriteMsg(str, notice); err != nil {
		return err
	}
	var resp wire.Response
	if err := wire.ReadMsg(str, &resp); err != nil {
		return err
	}
	str.CancelRead(0) // read by length; release the stream
	return resp.AsError()
}

// NotifyMember tells one connected member to check in now (it was moved).
func (s *Server) NotifyMember(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	conn, ok := s.conns[id]
	if !ok {
		return
	}
	notice := &wire.Request{Body: &wire.Request_RevisionNotice{RevisionNotice: &wire.RevisionNotice{}}}
	s.pushWG.Add(1)
	go func() {
		defer s.pushWG.Done()
		ctx, cancel := context.WithTimeout(conn.Context(), 10*time.Second)
		defer cancel()
		if err := push(ctx, conn, notice); err != nil {
			s.log.Debug("notify member", "member", id, "err", err)
		}
	}()
}

// Disconnect closes a member's connection (it was removed) and forgets
// what the server kept of it.
func (s *Server) Disconnect(id string) {
	s.unconfirmed.Delete(id)
	s.auditLimits.Delete(id)
	s.certIssued.Delete(id)
	s.mu.Lock()
	conn, ok := s.conns[id]
	s.mu.Unlock()
	if ok {
		conn.CloseWithError(wire.CloseNotEnrolled, "this member was removed by an admin")
	}
}

// Connected reports whether a member has a live connection.
func (s *Server) Connected(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.conns[id]
	return ok
}

// place puts an agent in the office its reported addresses fall in, or
// back in its home office (roaming when outside the home office's ranges).
// Relays stay where they enrolled: they serve an office, they do not roam.
func (s *Server) place(m *store.Member, offices []store.Office) {
	if m.Role != "agent" {
		return
	}
	if m.Home == "" {
		m.Home = m.Office // enrolled before homes existed
	}
	var po []placement.Office
	for _, o := range offices {
		po = append(po, placement.Office{Name: o.Name, Subnets: o.Subnets, Egress: o.Egress})
	}
	p := placement.Place(po, m.Home, m.Address, m.Addresses)
	if p.Office != m.Office || p.Roaming != m.Roaming {
		s.log.Info("agent placed", "member", m.ID, "from", m.Office, "to", p.Office, "roaming", p.Roaming)
	}
	// A claim the coordinator cannot confirm is told once per office, so
	// that an admin behind a NAT learns to list its egress.
	// Only members with such a claim are kept, so the map does not grow
	// with the fleet.
	if p.Unconfirmed == "" {
		s.unconfirmed.Delete(m.ID)
	} else if prev, _ := s.unconfirmed.Swap(m.ID, p.Unconfirmed); prev != p.Unconfirmed {
		s.log.Warn("agent reports an address in another office's range, but connects from outside that office's subnets and egress: not placed there (list the office's NAT address in its egress to admit visitors)",
			"member", m.ID, "hostname", m.Hostname, "office", p.Unconfirmed, "seen", m.Address, "reported", m.Addresses, "placed", p.Office)
	}
	m.Office, m.Roaming = p.Office, p.Roaming
}
