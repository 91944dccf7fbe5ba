package relay

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outposthq/outpost/pkg/gossip"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/member"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// Version is set at build time.
var Version = "dev"

// membership makes the relay a member of its office: it enrols with the
// coordinator (role relay), keeps the QUIC link open, checks in with the
// URL agents fetch from, joins the office gossip, and asks for the
// short-lived read-only file-server credentials the cache reads with.
type membership struct {
	cfg    Config
	log    *slog.Logger
	linked chan struct{} // closed once the link exists
	link   *member.Client
	// call is one exchange with the coordinator over the link (tests
	// replace it); now is the clock of the check-in log.
	call func(context.Context, *wire.Request) (*wire.Response, error)
	now  func() time.Time

	mu       sync.Mutex
	interval time.Duration

	// onPolicy, if set, is told the artifacts of each newer signed policy
	// of the office; kick wakes the loop on a "revision N is out" push.
	onPolicy func(revision uint64, hashes []string, sizes map[string]int64)
	// staging, if set, says how far pre-staging has come, for check-ins.
	staging func() *wire.StagingStatus
	policy  *officePolicy
	kick    chan struct{}
	// serving, if set, is the HTTPS certificate to keep issued and fresh.
	serving *servingCert
	id      *member.Identity
	// failing is the check-ins failed in a row. The check-in loop's alone.
	failing logging.Outage
	// removed is the coordinator's list of removed members, refused
	// content though their certificates still verify.
	removed atomic.Pointer[removedSet]
}

func newMembership(cfg Config, logger *slog.Logger) *membership {
	return &membership{cfg: cfg, log: logger.With("component", "membership"), linked: make(chan struct{}),
		interval: 2 * time.Minute, kick: make(chan struct{}, 1), now: time.Now}
}

// FileServer asks the coordinator for file-server credentials, waiting
// for enrollment and the link as long as ctx allows.
func (m *membership) FileServer(ctx context.Context) (*wire.FileServerResponse, error) {
	select {
	case <-m.linked:
	case <-ctx.Done():
		return nil, fmt.Errorf("file-server credentials: not enrolled with the coordinator yet: %w", ctx.Err())
	}
	resp, err := m.call(ctx, &wire.Request{Body: &wire.Request_FileServer{FileServer: &wire.FileServerRequest{}}})
	if err != nil {
		return nil, fmt.Errorf("file-server credentials from the coordinator: %w", err)
	}
	return resp.GetFileServer(), nil
}

// loadSaved applies the policy saved before a restart, so that its pins
// hold before the relay serves or evicts anything (New calls it; Run would
// be too late, with requests already coming). It reports whether the pins
// are known: a relay with no saved policy pins nothing, but one whose
// saved policy cannot be read waits for the coordinator's.
func (m *membership) loadSaved() (known bool) {
	id, err := member.LoadIdentity(filepath.Join(m.cfg.DataDir, "identity"))
	if errors.Is(err, member.ErrNotEnrolled) {
		// Enrolment may find a policy saved under an earlier identity.
		_, err := os.Stat(filepath.Join(m.cfg.DataDir, policyFile))
		return errors.Is(err, fs.ErrNotExist)
	}
	if err != nil || id.Role != wire.Role_ROLE_RELAY {
		return false // Run says what is wrong
	}
	m.policy = &officePolicy{key: id.PolicyKey, office: id.Office, dir: m.cfg.DataDir, apply: m.onPolicy}
	if err := m.policy.load(); err != nil {
		m.log.Warn("saved policy not used; nothing is evicted until the coordinator's arrives or a fetch needs room", "err", err)
		return false
	}
	return true
}

// Run enrols (retrying while the coordinator is unreachable; a refused
// token is final), then runs the link, gossip and check-ins until ctx ends.
func (m *membership) Run(ctx context.Context) error {
	hostname, _ := os.Hostname()
	id, err := member.LoadOrEnrollRetrying(ctx, member.EnrolRequest{
		Dir: filepath.Join(m.cfg.DataDir, "identity"), Coordinator: m.cfg.CoordinatorAddr(),
		Fingerprint: m.cfg.CAFingerprint, Token: m.cfg.EnrollToken, Hostname: hostname,
		Role: wire.Role_ROLE_RELAY, FirstBackoff: 500 * time.Millisecond,
	}, m.log)
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return err
	}
	if id.Role != wire.Role_ROLE_RELAY {
		return fmt.Errorf("the identity in %s is an agent's, not a relay's", filepath.Join(m.cfg.DataDir, "identity"))
	}
	if m.onPolicy != nil && m.policy == nil { // enrolled just now, or loadSaved could not tell
		m.policy = &officePolicy{key: id.PolicyKey, office: id.Office, dir: m.cfg.DataDir, apply: m.onPolicy}
		if err := m.policy.load(); err != nil {
			m.log.Warn("saved policy not used", "err", err)
		}
	}
	push := func(_ context.Context, req *wire.Request) *wire.Response {
		if req.GetRevisionNotice() != nil {
			select {
			case m.kick <- struct{}{}:
			default:
			}
		}
		return nil
	}
	link, err := member.NewClient(id, m.cfg.CoordinatorAddr(), push, m.log)
	if err != nil {
		return err
	}
	m.link, m.call = link, link.Call
	m.id = id
	// Before the first request is verified: removed members are refused
	// from the start, even while the coordinator is away.
	removed, err := loadRemoved(m.cfg.DataDir)
	if err != nil {
		// Asked for whole at the first check-in (version 0).
		m.log.Warn("the kept list of removed members is not used; the coordinator's comes at the first check-in", "err", err)
		removed = &removedSet{}
	}
	m.removed.Store(removed)
	close(m.linked)

	var node *gossip.Node
	if m.cfg.GossipBind != "" {
		node, err = gossip.New(gossip.Config{Name: id.ID, Bind: m.cfg.GossipBind, Keys: [][]byte{id.GossipKey},
			PassKey: id.PolicyKey, Signer: id.GossipSigner, Pass: id.Pass(), LAN: true}, m.log)
		if err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				errc <- err
				cancel()
			}
		}()
	}
	run(link.Run)
	if node != nil {
		run(node.Run)
	}
	m.log.Info("relay enrolled", "member", id.ID, "office", id.Office)
	for ctx.Err() == nil {
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		m.checkin(cctx, node)
		ccancel()
		m.mu.Lock()
		wait := m.interval
		m.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		case <-m.kick:
		}
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func (m *membership) checkin(ctx context.Context, node *gossip.Node) {
	hostname, _ := os.Hostname()
	req := &wire.CheckinRequest{Hostname: hostname, ServeUrl: m.cfg.AdvertiseURL, Version: Version}
	if m.staging != nil {
		req.Staging = m.staging()
	}
	if node != nil {
		req.GossipAddress = node.Addr()
	}
	if m.policy != nil {
		req.Revision = m.policy.revision // the check-in loop is its only writer
	}
	if m.id.NeedsPass(time.Now()) {
		req.GossipKey = m.id.GossipPublic()
	}
	req.CaFingerprint = m.id.CAFingerprint()
	req.RemovedMembersVersion = m.removed.Load().version
	resp, err := m.call(ctx, &wire.Request{Body: &wire.Request_Checkin{Checkin: req}})
	if err != nil {
		m.checkinFailed(err)
		return
	}
	if n, since := m.failing.Over(); n > 0 {
		m.log.Info("check-in succeeded again", "failed_checkins", n, "failing_since", since.Format(time.RFC3339))
	}
	if sp := resp.GetCheckin().GetMemberPass(); sp != nil {
		m.takePass(sp, node)
	}
	if rm := resp.GetCheckin().GetRemovedMembers(); rm != nil {
		m.takeRemoved(rm)
	}
	m.id.TakeCAs(resp.GetCheckin().GetCaCertificates(), filepath.Join(m.cfg.DataDir, "identity"), m.log)
	m.id.RenewIfDue(ctx, m.call, filepath.Join(m.cfg.DataDir, "identity"), m.log)
	info := resp.GetCheckin().GetOffice()
	if m.serving != nil {
		renewed, err := m.serving.ensure(ctx, m.call, m.cfg.ServingHosts(), info.GetRelays())
		switch {
		case err != nil && err.Error() != m.serving.warned:
			if leaf := m.serving.leaf(); leaf != nil && time.Now().Before(leaf.NotAfter) {
				m.log.Warn("HTTPS serving certificate not renewed; serving with the one held until it ends, asking again at each check-in",
					"err", err, "expires", leaf.NotAfter)
			} else {
				m.log.Warn("no HTTPS serving certificate; agents cannot fetch from this relay yet", "err", err)
			}
			m.serving.warned = err.Error()
		case renewed:
			leaf := m.serving.leaf()
			m.log.Info("HTTPS serving certificate issued by the coordinator's CA", "hosts", tlsutil.CertHosts(leaf), "expires", leaf.NotAfter)
			m.serving.warned = ""
		}
	}
	if m.policy != nil && info.GetRevision() > m.policy.revision {
		if err := m.policy.fetch(ctx, m.call); err != nil {
			m.log.Warn("policy not taken", "err", err)
		}
	}
	if s := info.GetCheckinIntervalSeconds(); s > 0 {
		m.mu.Lock()
		m.interval = time.Duration(s) * time.Second
		m.mu.Unlock()
	}
	if node != nil && len(node.Peers()) == 0 && len(info.GetGossipSeeds()) > 0 {
		if _, err := node.Join(info.GetGossipSeeds()); err != nil {
			m.log.Debug("join office gossip", "err", err)
		}
	}
}

// checkinFailed logs a failed check-in: the first of a row is a warning,
// and so is one an hour while they go on, so that a coordinator away for
// days is neither missed nor 720 lines a day.
func (m *membership) checkinFailed(err error) {
	m.failing.Failed(m.log, m.now(), "check-in failed; trying again every interval (further failures are logged at debug level, with a warning once an hour)",
		"check-ins still failing", "err", err)
}

// checkinSoon has the relay check in now rather than at the interval: the
// coordinator waits for its staging report.
func (m *membership) checkinSoon() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// takeRemoved keeps the coordinator's list of removed members, on disk
// first: a list refused on disk is not taken, and the next check-in
// brings it again.
func (m *membership) takeRemoved(rm *wire.RemovedMembers) {
	set, err := newRemovedSet(rm)
	if err != nil {
		m.log.Warn("list of removed members from the coordinator refused", "err", err)
		return
	}
	if err := saveRemoved(m.cfg.DataDir, rm); err != nil {
		m.log.Warn("keep the list of removed members", "err", err)
		return
	}
	was := m.removed.Swap(set)
	if len(set.ids) != len(was.ids) {
		m.log.Info("removed members refused content", "count", len(set.ids), "version", set.version)
	}
}

// takePass keeps a member pass the coordinator issued, and announces it.
func (m *membership) takePass(sp *wire.SignedMemberPass, node *gossip.Node) {
	pass, changed, err := m.id.TakePass(filepath.Join(m.cfg.DataDir, "identity"), sp, time.Now())
	if err != nil {
		m.log.Warn("member pass from the coordinator", "err", err)
	}
	if changed && node != nil {
		if err := node.SetPass(pass); err != nil {
			m.log.Warn("announce member pass", "err", err)
		}
	}
}
