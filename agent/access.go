package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/agent/internal/session"
	"github.com/outposthq/outpost/pkg/wire"
)

var started = time.Now()

// startSessions builds the technician session server of this host.
func (a *Agent) startSessions() error {
	s, err := session.New(session.Config{DataDir: filepath.Join(a.cfg.DataDir, "sessions"), MemberID: a.id.ID,
		BreakGlassHash: a.cfg.BreakGlassHash, Actions: hostActions{a},
		// The roll-up keeps what this host last heard of the
		// coordinator's clock; it is made before sessions run.
		Now: func() time.Time {
			if a.rollup == nil {
				return time.Now()
			}
			return a.rollup.coordinatorNow()
		}},
		a.state, inventory{a}, a.log, a.reg)
	if err != nil {
		return err
	}
	a.sessions = s
	return nil
}

// runSessions runs the session server and, when session_listen is set, the
// direct listener technicians reach without the coordinator.
func (a *Agent) runSessions(ctx context.Context) error {
	if a.cfg.SessionListen == "" {
		return a.sessions.Run(ctx)
	}
	// The chain carries the CA's certificates so that a technician who
	// pinned the fingerprint of any of them can verify this host's
	// certificate.
	cert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		c := a.id.Certificate()
		return &tls.Certificate{Certificate: append(append([][]byte(nil), c.Certificate[:1]...), a.id.CAChain()...), PrivateKey: c.PrivateKey}, nil
	}
	// The agent owns the socket and the transport, so that stopping closes
	// every connection and frees the port at once (a listener alone keeps
	// it while connections linger), and a restart can bind it again.
	udpAddr, err := net.ResolveUDPAddr("udp", a.cfg.SessionListen)
	if err != nil {
		return fmt.Errorf("session_listen %q: %w", a.cfg.SessionListen, err)
	}
	udp, err := net.ListenUDP("udp", udpAddr)
	if err != nil {
		return fmt.Errorf("listen for direct technician sessions on %s: %w", a.cfg.SessionListen, err)
	}
	tr := &quic.Transport{Conn: udp}
	ln, err := tr.Listen(&tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: cert,
		NextProtos: []string{wire.ALPNTechnician}}, &quic.Config{MaxIdleTimeout: time.Minute, MaxIncomingStreams: 16})
	if err != nil {
		udp.Close()
		return fmt.Errorf("listen for direct technician sessions on %s: %w", a.cfg.SessionListen, err)
	}
	a.log.Info("direct technician sessions", "addr", ln.Addr().String())
	a.sessionAddr.Store(ln.Addr().String()) // the coordinator tells technicians
	var conns sourceConns
	a.sessions.Go(func() {
		defer func() {
			ln.Close()
			tr.Close()
			udp.Close()
		}()
		for {
			conn, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			release, ok := conns.acquire(conn.RemoteAddr(), maxDirectConnsPerSource)
			if !ok {
				a.log.Debug("direct technician connection refused: too many from its source", "remote", conn.RemoteAddr().String())
				conn.CloseWithError(1, "too many connections from your address: try again when some of your sessions have ended")
				continue
			}
			a.sessions.Go(func() {
				defer release()
				defer conn.CloseWithError(0, "")
				for {
					str, err := conn.AcceptStream(ctx)
					if err != nil {
						return
					}
					a.sessions.Go(func() {
						a.refreshRevocations(ctx)
						a.sessions.Serve(session.WithRemote(ctx, conn.RemoteAddr()), str, func() { str.CancelRead(0) })
						a.flushAudit(ctx)
					})
				}
			})
		}
	})
	return a.sessions.Run(ctx)
}

// maxDirectConnsPerSource bounds the direct technician connections one
// source (an IPv4 address, an IPv6 /64) holds at once. They are
// unauthenticated until a session's token verifies, and each may have 16
// streams waiting for their SessionOpen; the CLI opens one per command.
const maxDirectConnsPerSource = 32

// sourceConns counts open connections by source.
type sourceConns struct {
	mu sync.Mutex
	n  map[string]int
}

// acquire counts a connection from a, unless its source already has
// limit; release uncounts it.
func (c *sourceConns) acquire(a net.Addr, limit int) (release func(), ok bool) {
	key := a.String()
	if u, isUDP := a.(*net.UDPAddr); isUDP {
		ip := u.IP
		if ip.To4() == nil {
			ip = ip.Mask(net.CIDRMask(64, 128))
		}
		key = ip.String()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key] >= limit {
		return nil, false
	}
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.n[key]--; c.n[key] <= 0 {
				delete(c.n, key)
			}
		})
	}, true
}

// onAccessPush takes the coordinator's technician pushes: revocations, and
// offers of brokered sessions, which the agent attaches with a stream of
// its own connection (nothing dials in to a host behind NAT).
func (a *Agent) onAccessPush(ctx context.Context, req *wire.Request) (*wire.Response, bool) {
	switch b := req.GetBody().(type) {
	case *wire.Request_Revocations:
		a.takeRevocations(b.Revocations, "")
		return nil, true
	case *wire.Request_SessionOffer:
		// The offer carries the current list: it applies before the session.
		a.takeRevocations(b.SessionOffer.GetRevocations(), "")
		id := b.SessionOffer.GetSessionId()
		a.sessions.Go(func() { a.attachSession(ctx, id) })
		return nil, true
	}
	return nil, false
}

func (a *Agent) attachSession(ctx context.Context, id string) {
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	str, err := a.link.OpenStream(octx)
	cancel()
	if err != nil {
		a.log.Warn("attach technician session", "session", id, "err", err)
		return
	}
	if err := wire.WriteMsg(str, &wire.Request{Body: &wire.Request_SessionAttach{SessionAttach: &wire.SessionAttach{SessionId: id}}}); err != nil {
		str.CancelRead(1)
		str.Close()
		return
	}
	a.sessions.Serve(ctx, str, func() { str.CancelRead(0) })
	a.flushAudit(ctx)
}

// afterCheckin applies the revocation list of a check-in answer and sends
// the audit records the coordinator has not acknowledged.
func (a *Agent) afterCheckin(ctx context.Context, resp *wire.CheckinResponse) {
	a.takeRevocations(resp.GetRevocations(), "")
	a.flushAudit(ctx)
}

// flushAudit sends the spooled audit records; they are forgotten only once
// the coordinator acknowledged them.
func (a *Agent) flushAudit(ctx context.Context) {
	recs := auditBatch(a.sessions.PendingAudit())
	if len(recs) == 0 || !a.link.Connected() {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := a.link.Call(cctx, &wire.Request{Body: &wire.Request_Audit{Audit: &wire.AuditBatch{Records: recs}}}); err != nil {
		a.log.Debug("send audit records; kept for the next check-in", "records", len(recs), "err", err)
		return
	}
	a.sessions.AckAudit(recs)
}

// An audit batch holds at most maxAuditBatch records and maxAuditBatchBytes
// of them: a quarter of the message limit, so that no spool, whatever its
// records hold, makes a message the coordinator must refuse — which would
// keep every record after it from ever being sent.
const (
	maxAuditBatch      = 1000
	maxAuditBatchBytes = wire.MaxMessageSize / 4
)

// auditBatch is the head of the spool that one message carries.
func auditBatch(recs []*wire.AuditRecord) []*wire.AuditRecord {
	size := 0
	for i, r := range recs {
		// A record's size, with its key and length in the batch.
		n := proto.Size(r) + 1 + protowire.SizeVarint(uint64(proto.Size(r)))
		if i == maxAuditBatch || (i > 0 && size+n > maxAuditBatchBytes) {
			return recs[:i]
		}
		size += n
	}
	return recs
}

// inventory describes this host to technicians with the view right.
type inventory struct{ a *Agent }

func (i inventory) Inventory() *wire.Inventory {
	a := i.a
	a.mu.Lock()
	office := a.office
	a.mu.Unlock()
	inv := &wire.Inventory{MemberId: a.id.ID, Hostname: a.cfg.Hostname, Office: office, Os: runtime.GOOS, Arch: runtime.GOARCH,
		Addresses: a.addresses(), Revision: a.state.Revision(), Version: Version, UptimeSeconds: int64(time.Since(started).Seconds())}
	if boot, ok := bootTime(); ok {
		inv.SystemUptimeSeconds = int64(time.Since(boot).Seconds())
	}
	for _, it := range a.state.Report().GetItems() {
		inv.Items = append(inv.Items, &wire.InventoryItem{Id: it.GetId(), Kind: it.GetKind(),
			Status: statusName(it.GetStatus()), Message: it.GetMessage()})
	}
	return inv
}

func statusName(s wire.ItemReport_Status) string {
	switch s {
	case wire.ItemReport_STATUS_COMPLIANT:
		return "compliant"
	case wire.ItemReport_STATUS_PENDING:
		return "pending"
	case wire.ItemReport_STATUS_FAILED:
		return "failed"
	case wire.ItemReport_STATUS_NOT_APPLICABLE:
		return "not_applicable"
	}
	return "unknown"
}

// sessionAddress is where this host takes direct sessions, "" if nowhere.
func (a *Agent) sessionAddress() string {
	s, _ := a.sessionAddr.Load().(string)
	return s
}

// WithSessionListen turns on direct technician sessions on addr and, with
// a non-empty hash, the break-glass password (tests; agent.yaml has
// session_listen and break_glass_hash).
func WithSessionListen(addr, breakGlassHash string) Option {
	return func(a *Agent) { a.cfg.SessionListen, a.cfg.BreakGlassHash = addr, breakGlassHash }
}
