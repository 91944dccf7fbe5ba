package quicsrv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/time/rate"

	"github.com/outposthq/outpost/coordinator/internal/auth"
	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/safetext"
	"github.com/outposthq/outpost/pkg/wire"
)

// TokenVerifier checks a technician's access token and knows what hosts
// must refuse.
type TokenVerifier interface {
	Verify(token string) (*auth.Principal, error)
	// SessionToken signs a token for one host from a verified one: the
	// host gets that, never the technician's access token.
	SessionToken(p *auth.Principal, memberID string) (string, time.Time, error)
	// SignedRevocations is made from the store's users alone: the server
	// keeps it until they change (store.UsersVersion).
	SignedRevocations() (*wire.SignedRevocations, error)
	Audit(ev store.AuditEvent)
}

// accessState is the broker's part of the server.
type accessState struct {
	mu   sync.Mutex
	auth TokenVerifier
	// set counts the verifiers set: what one made is not another's.
	set     uint64
	pending map[string]*pendingSession // session id → technician waiting for the agent
}

type pendingSession struct {
	member string
	stream chan *quic.Stream
}

// attachTimeout bounds how long a technician waits for the agent to open
// its side of a brokered session.
const attachTimeout = 15 * time.Second

// SetAccess enables technician sessions and revocation pushes.
func (s *Server) SetAccess(v TokenVerifier) {
	s.access.mu.Lock()
	defer s.access.mu.Unlock()
	s.access.auth = v
	s.access.set++
	s.access.pending = map[string]*pendingSession{}
}

func (s *Server) verifier() TokenVerifier {
	v, _ := s.verifierSet()
	return v
}

// verifierSet is the verifier and which one set it is.
func (s *Server) verifierSet() (TokenVerifier, uint64) {
	s.access.mu.Lock()
	defer s.access.mu.Unlock()
	return s.access.auth, s.access.set
}

// revocations is the current list for a check-in answer; nil without users.
//
// The list is made from every user, and every check-in answer carries it:
// it is kept until a user changes (store.UsersVersion), so that a
// check-in does not cost what the users are.
func (s *Server) revocations() *wire.SignedRevocations {
	v, set := s.verifierSet()
	if v == nil {
		return nil
	}
	at := listVersion{set: set, users: s.store.UsersVersion()} // before the list is made: see store/cache.go
	if l, ok := s.revList.get(at); ok {
		return l
	}
	l, err := v.SignedRevocations()
	if err != nil {
		s.log.Error("revocation list", "err", err)
		return nil
	}
	s.revList.put(at, l)
	return l
}

// listVersion is what a revocation list was made from: the verifier
// (which one set) and the store's users (UsersVersion).
type listVersion struct{ set, users uint64 }

// revocationCache is the last revocation list made, and from what.
type revocationCache struct {
	mu   sync.Mutex
	at   listVersion
	list *wire.SignedRevocations
	ok   bool
}

func (c *revocationCache) get(at listVersion) (*wire.SignedRevocations, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.list, c.ok && c.at == at
}

// put keeps l, made from at, unless what is kept was made from newer.
func (c *revocationCache) put(at listVersion, l *wire.SignedRevocations) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ok && (at.set < c.at.set || at.set == c.at.set && at.users < c.at.users) {
		return
	}
	c.at, c.list, c.ok = at, l, true
}

// NotifyRevocations pushes the current revocation list to every connected
// member without waiting; members that miss it learn at check-in, and
// with every brokered session offer.
func (s *Server) NotifyRevocations() {
	l := s.revocations()
	if l == nil {
		return
	}
	req := &wire.Request{Body: &wire.Request_Revocations{Revocations: l}}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, conn := range s.conns {
		s.pushWG.Add(1)
		go func() {
			defer s.pushWG.Done()
			ctx, cancel := context.WithTimeout(conn.Context(), 10*time.Second)
			defer cancel()
			if err := push(ctx, conn, req); err != nil {
				s.m.pushes.WithLabelValues("error").Inc()
				s.log.Debug("push revocations", "member", id, "err", err)
				return
			}
			s.m.pushes.WithLabelValues("ok").Inc()
		}()
	}
}

// A host may send auditBurst records at once (a spool that waited out an
// outage) and auditRate a second over time, far beyond what technicians
// do on one host.
const (
	auditBurst = 10000
	auditRate  = rate.Limit(1)
)

// storeAudit keeps a host's audit records; the Ack lets the host forget them.
func (s *Server) storeAudit(id string, b *wire.AuditBatch) *wire.Response {
	if len(b.GetRecords()) > auditBurst {
		return wire.Errorf(wire.Error_CODE_BAD_REQUEST, "audit batch too large")
	}
	// A host's records are bounded over time too: one that writes
	// without end (a misbehaving or hostile host) must not fill the
	// coordinator's disk. Refused records stay in the host's spool.
	l, _ := s.auditLimits.LoadOrStore(id, rate.NewLimiter(auditRate, auditBurst))
	if !l.(*rate.Limiter).AllowN(time.Now(), len(b.GetRecords())) {
		s.log.Warn("too many audit records from a host: refused for now", "member", id, "records", len(b.GetRecords()))
		return wire.Errorf(wire.Error_CODE_DENIED, "too many audit records from this host: kept on the host, sent later")
	}
	// A host's text is not trusted: what it writes, and what anyone whose
	// attempt it records wrote, reaches an admin's terminal through
	// outpost audit, and must not act on it there.
	var events []store.AuditEvent
	for _, r := range b.GetRecords() {
		events = append(events, store.AuditEvent{
			At: time.UnixMilli(r.GetAtUnixMs()).UTC(), Actor: safetext.Field(r.GetUser(), 64), Action: safetext.Field(r.GetAction(), 32),
			Target: "host " + id, Detail: safetext.Field(r.GetDetail(), maxText), Allowed: r.GetAllowed(), Source: id, ID: safetext.Field(r.GetId(), 64),
		})
	}
	if err := s.store.AppendAudit(events...); err != nil {
		s.log.Error("store audit", "member", id, "err", err)
		return wire.Errorf(wire.Error_CODE_INTERNAL, "could not store the audit records")
	}
	return &wire.Response{Body: &wire.Response_Ack{Ack: &wire.Ack{}}}
}

// serveTechnician serves the outpost CLI: each stream is one session,
// opened with a SessionOpen, brokered to the agent over the agent's own
// connection.
func (s *Server) serveTechnician(ctx context.Context, conn *quic.Conn) {
	defer conn.CloseWithError(0, "")
	var wg sync.WaitGroup
	defer wg.Wait()
	// The streams whose SessionOpen is read before its token is checked:
	// a connection proves nothing until then, and 64 streams of 256 KiB
	// each, on each of a source's connections, would be a gigabyte held
	// for anyone who can reach the port. The CLI opens one at a time.
	unverified := make(chan struct{}, maxUnverifiedOpens)
	for {
		str, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.broker(ctx, conn, str, unverified)
		}()
	}
}

// maxUnverifiedOpens bounds the SessionOpens one technician connection
// has read at once before their tokens are checked.
const maxUnverifiedOpens = 4

func endSession(str *quic.Stream, denied bool, format string, args ...any) {
	endSessionFor(str, wire.SessionEnd_REASON_UNSPECIFIED, denied, format, args...)
}

// endSessionFor ends a session the coordinator could not broker, with the
// reason the CLI gives its advice by.
func endSessionFor(str *quic.Stream, reason wire.SessionEnd_Reason, denied bool, format string, args ...any) {
	_ = wire.WriteMsg(str, &wire.SessionOutput{Body: &wire.SessionOutput_End{End: &wire.SessionEnd{
		ExitCode: -1, Error: fmt.Sprintf(format, args...), Denied: denied, Reason: reason}}})
	str.Close()
}

func (s *Server) broker(ctx context.Context, conn *quic.Conn, str *quic.Stream, unverified chan struct{}) {
	defer str.Close()
	deadline := time.Now().Add(30 * time.Second)
	str.SetDeadline(deadline)
	// Unread, the stream's bytes wait in flow control, not here.
	wait := time.NewTimer(time.Until(deadline))
	defer wait.Stop()
	select {
	case unverified <- struct{}{}:
	case <-ctx.Done():
		str.CancelRead(1)
		return
	case <-wait.C:
		str.CancelRead(1)
		return
	}
	release := sync.OnceFunc(func() { <-unverified })
	defer release()
	var open wire.SessionOpen
	if err := wire.ReadMsgMax(str, &open, wire.MaxSessionOpenSize); err != nil {
		str.CancelRead(1)
		return
	}
	v := s.verifier()
	if v == nil {
		endSession(str, true, "technician sessions are not enabled on this coordinator")
		return
	}
	remote := remoteIP(conn.RemoteAddr())
	p, err := v.Verify(open.GetToken())
	release()
	if err != nil {
		s.m.requests.WithLabelValues("session", "unauthenticated").Inc()
		v.Audit(brokerEvent(store.AuditEvent{Actor: "?", Action: "connect", Target: open.GetHost(), Detail: "refused: " + err.Error(), Remote: remote}))
		endSession(str, true, "the coordinator refused your token: %v", err)
		return
	}
	var m *store.Member
	if auth.RoleRank(p.Role) >= auth.RoleRank(auth.RoleReadOnly) {
		m, err = s.store.FindHost(open.GetHost())
	} else {
		// Others learn only of hosts where they have some right: not
		// whether another is called that, nor when it was last seen.
		m, err = s.store.FindHostFor(p.User, open.GetHost())
		if errors.Is(err, store.ErrNotFound) {
			v.Audit(brokerEvent(store.AuditEvent{Actor: p.User, Action: "connect", Target: open.GetHost(), Detail: "refused: no right on any host of that name", Remote: remote}))
		}
	}
	if err != nil {
		reason := wire.SessionEnd_REASON_UNSPECIFIED
		switch {
		case errors.Is(err, store.ErrNotFound):
			reason = wire.SessionEnd_REASON_UNKNOWN_HOST
		case errors.Is(err, store.ErrConflict):
			reason = wire.SessionEnd_REASON_AMBIGUOUS_HOST
		}
		endSessionFor(str, reason, false, "%v", err)
		return
	}
	s.mu.Lock()
	agent, ok := s.conns[m.ID]
	s.mu.Unlock()
	if !ok {
		endSessionFor(str, wire.SessionEnd_REASON_HOST_OFFLINE, false, "host %s (%s) is not connected to the coordinator (last seen %s); try again when it is online",
			m.Hostname, m.ID, m.LastSeen.UTC().Format(time.RFC3339))
		return
	}
	kind := strings.ToLower(strings.TrimPrefix(open.GetKind().String(), "KIND_"))
	// The host gets a token for itself alone, never the access token.
	if open.Token, _, err = v.SessionToken(p, m.ID); err != nil {
		endSession(str, true, "%v", err)
		return
	}
	v.Audit(brokerEvent(store.AuditEvent{Actor: p.User, Action: "connect", Target: "host " + m.ID, Detail: "brokered " + kind, Allowed: true, Remote: remote}))

	id := newSessionID()
	pend := &pendingSession{member: m.ID, stream: make(chan *quic.Stream, 1)}
	s.access.mu.Lock()
	s.access.pending[id] = pend
	s.access.mu.Unlock()
	defer func() {
		s.access.mu.Lock()
		delete(s.access.pending, id)
		s.access.mu.Unlock()
	}()
	// The offer carries the current revocations, so the host never takes a
	// session on a stale list.
	offer := &wire.Request{Body: &wire.Request_SessionOffer{SessionOffer: &wire.SessionOffer{SessionId: id, Revocations: s.revocations()}}}
	pctx, cancel := context.WithTimeout(ctx, attachTimeout)
	defer cancel()
	if err := push(pctx, agent, offer); err != nil {
		endSession(str, false, "host %s did not take the session: %v", m.Hostname, err)
		return
	}
	var agentStr *quic.Stream
	select {
	case agentStr = <-pend.stream:
	case <-pctx.Done():
		endSession(str, false, "host %s did not attach to the session within %v", m.Hostname, attachTimeout)
		return
	}
	s.m.requests.WithLabelValues("session", "ok").Inc()
	str.SetDeadline(time.Time{})
	agentStr.SetDeadline(time.Time{})
	if err := wire.WriteMsg(agentStr, &open); err != nil {
		endSession(str, false, "host %s went away: %v", m.Hostname, err)
		agentStr.CancelRead(1)
		agentStr.Close()
		return
	}
	splice(ctx, str, agentStr)
}

// brokerEvent is ev as the broker records it: the host name a technician
// gave is recorded even when nothing else of theirs verified (no
// credential is needed to be refused), so every text is escaped and
// bounded, as a host's records are.
func brokerEvent(ev store.AuditEvent) store.AuditEvent {
	ev.Actor = safetext.Field(ev.Actor, 64)
	ev.Target = safetext.Field(ev.Target, 253)
	ev.Detail = safetext.Field(ev.Detail, maxText)
	ev.Remote = safetext.Field(ev.Remote, 64)
	return ev
}

// splice copies both ways until the agent ends the session (or either side
// goes away), then closes both.
func splice(ctx context.Context, tech, agent *quic.Stream) {
	// The technician gone (their connection lost, or their side no longer
	// reading) is told to the host at once: the copy toward it may be
	// stuck writing input the host does not read, and the copy from it
	// waiting for output that does not come.
	stop := context.AfterFunc(tech.Context(), func() {
		agent.CancelWrite(1)
		agent.CancelRead(1)
	})
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := io.Copy(agent, tech); err != nil {
			// The technician went away (interrupted, network lost): a
			// reset, so the host ends what it runs for them.
			agent.CancelWrite(1)
			return
		}
		agent.Close()
	}()
	_, err := io.Copy(tech, agent)
	// From here the host's side ends the session: the technician's stream
	// closing is this splice's doing.
	stop()
	if err != nil {
		tech.CancelWrite(1)
	}
	tech.Close()
	// The session is over: stop reading the technician, who may keep
	// typing into a closed session.
	tech.CancelRead(0)
	agent.CancelRead(0)
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// attach hands an agent's stream to the technician waiting for it.
func (s *Server) attach(ctx context.Context, member string, str *quic.Stream, at *wire.SessionAttach) {
	s.access.mu.Lock()
	pend, ok := s.access.pending[at.GetSessionId()]
	if ok && pend.member == member {
		delete(s.access.pending, at.GetSessionId())
	}
	s.access.mu.Unlock()
	if !ok || pend.member != member {
		str.CancelRead(1)
		str.CancelWrite(1)
		return
	}
	str.SetDeadline(time.Time{})
	pend.stream <- str
	// The stream now belongs to the broker; wait for it to finish so that
	// the member's stream handler accounts for it.
	select {
	case <-str.Context().Done():
	case <-ctx.Done():
	}
}

func newSessionID() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return "ss-" + hex.EncodeToString(b[:])
}
