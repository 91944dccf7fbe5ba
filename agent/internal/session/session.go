// Package session is the agent's technician session server. A technician
// signed in on the coordinator presents a signed access token; this
// package verifies it with the token keys of the host's own signed policy,
// refuses tokens the coordinator revoked, decides from the policy's
// permission lists (deny wins) and then runs the session: a command, a
// shell (on a pseudo-terminal when the technician has one, else over
// pipes), a file transfer or the inventory. It ends live
// sessions of a user the moment a revocation arrives, and keeps an audit
// spool on disk until the coordinator acknowledges it.
//
// It does not carry bytes over the network itself: the agent hands it a
// stream (brokered by the coordinator over the agent's own QUIC
// connection) and it speaks the session protocol of pkg/wire on it.
package session

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/safetext"
	"github.com/outposthq/outpost/pkg/wire"
)

// PolicySource gives the host's current signed-and-verified policy.
type PolicySource interface {
	Policy() *wire.Policy
}

// InventorySource describes the host.
type InventorySource interface {
	Inventory() *wire.Inventory
}

// HostActions are what a technician with the control right may have the
// agent do: run the policy now, and reboot the host.
type HostActions interface {
	// Sync takes the newest policy and runs it now, and gives the run's
	// report.
	Sync(ctx context.Context) (*wire.Report, error)
	// Reboot schedules a reboot in delay (0: now), telling the host's
	// users reason; it returns once it is scheduled.
	Reboot(ctx context.Context, reason string, delay time.Duration) error
	// CancelReboot calls off a scheduled reboot.
	CancelReboot(ctx context.Context) error
}

// Config is what the server needs to know of its host.
type Config struct {
	DataDir  string // where the revocation list and the audit spool live
	MemberID string // this host's id in permission lists
	// Shell runs interactive sessions; default $SHELL, else /bin/sh.
	Shell string
	// OpenTimeout bounds the wait for the technician's first message.
	OpenTimeout time.Duration
	// BreakGlassHash is the Argon2id hash of the host-local break-glass
	// password; empty (the default) turns break-glass off.
	BreakGlassHash string
	// Actions runs the policy and reboots for technicians; nil refuses
	// both.
	Actions HostActions
	// Now, if set, is the coordinator's time as this host last heard it
	// (default: the host's clock). Session tokens live two minutes by the
	// coordinator's clock: judged by a host clock that drifted two
	// minutes, every one would be refused.
	Now func() time.Time
}

// Server runs technician sessions on this host.
type Server struct {
	cfg    Config
	policy PolicySource
	inv    InventorySource
	log    *slog.Logger
	now    func() time.Time

	mu   sync.Mutex
	revs *wire.RevocationList
	// signedRevs is revs as the coordinator signed it, to pass on.
	signedRevs *wire.SignedRevocations
	live       map[*liveSession]struct{}
	audit      []*wire.AuditRecord
	// auditFull says the spool has dropped records since it last had
	// room (told in the log once); auditStale that the spool on disk
	// could not be written as it should (a full disk at start): the next
	// record writes it whole.
	auditFull  bool
	auditStale bool
	// spent are the ids of session tokens that opened a session, until
	// they expire (Unix ms): each opens one.
	spent map[string]int64
	// spentVersion counts changes to spent; spentSave orders their writes
	// to disk (made outside mu), and spentSaved is the version written.
	spentVersion uint64
	spentSave    sync.Mutex
	spentSaved   uint64
	// glassFailures are the times of recent failed break-glass attempts,
	// by the technician's address ("" when not known).
	glassFailures map[string][]time.Time
	// glassCheck lets one break-glass password check run at a time.
	glassCheck sync.Mutex
	// saveMu orders the writes of the audit spool (spool.go), which are
	// made outside mu: a record must not wait for the disk while another
	// session is being opened or cut.
	saveMu sync.Mutex
	// refusals bounds the refused attempts recorded one by one: each
	// costs its sender nothing and the host a write to its disk.
	// Beyond it they are counted, and the count recorded when the next
	// one is.
	refusals   *rate.Limiter
	unrecorded int             // refusals not recorded one by one since
	unrecSince time.Time       // the first of them
	ctx        context.Context // Run's; sessions end with it
	wg         sync.WaitGroup

	sessions *prometheus.CounterVec
	cut      prometheus.Counter
}

type liveSession struct {
	user    string
	token   *wire.AccessToken
	cancel  context.CancelFunc
	revoked bool
	// need is the right the session runs on; local marks break-glass,
	// which no permission list grants.
	kind  wire.SessionOpen_Kind
	need  wire.Right
	local bool
	// withdrawn: ended because the host's policy no longer allows it, for
	// the reason why (said to the technician and recorded).
	withdrawn bool
	why       string
}

// listedAs is the token the coordinator's lists judge the session by. A
// break-glass session runs as "local:NAME", but NAME is the user the
// coordinator disables or holds to force server security: the same person
// in both, since break-glass takes only names of the coordinator's form.
// Only disabling applies to it: the tokens a new coordinator password
// ends are not what it runs on (issued "at the end of time", no other
// line of the list applies).
func (ls *liveSession) listedAs() *wire.AccessToken {
	if !ls.local {
		return ls.token
	}
	return &wire.AccessToken{User: strings.TrimPrefix(ls.user, "local:"), IssuedUnixMs: math.MaxInt64}
}

// stillAllowed says why p no longer allows the session, "" while it does:
// for a session on a token, the right it runs on; for break-glass, which
// no list grants, a user the coordinator now holds to sign in there.
func (s *Server) stillAllowed(p *wire.Policy, ls *liveSession) string {
	if ls.local {
		if name := ls.listedAs().GetUser(); slices.Contains(p.GetForceServerSecurityUsers(), name) {
			return name + " must sign in on the coordinator (force server security): break-glass is not for this user"
		}
		return ""
	}
	if !Decide(p.GetPermissions(), s.cfg.MemberID, ls.user, ls.token.GetGroups())[ls.need] {
		return fmt.Sprintf("an admin changed this host's permissions, which no longer allow you to %s here", kindVerb(ls.kind))
	}
	return ""
}

// maxAuditSpool bounds the records kept for the coordinator. A record's
// text is bounded too (maxAuditText, maxAuditDetail), so the spool stays
// within some 16 MiB however records are made.
const maxAuditSpool = 10000

// maxAuditText bounds each piece of a record that someone else chose (a
// path, a file name, a command line, a user name): a refused attempt costs
// its sender nothing, and must not cost the host or the coordinator much.
// maxAuditDetail bounds a record's whole detail, the pieces with how the
// session ended; the coordinator keeps as much.
const (
	maxAuditText   = 512
	maxAuditDetail = 1024
)

// maxSpentTokens bounds the session token ids remembered at once: far more
// sessions than a host takes in a token's life (two minutes).
const maxSpentTokens = 10000

// maxRebootDelay bounds how far off a technician may schedule a reboot.
const maxRebootDelay = 24 * 60 * 60

// New loads the persisted revocation list and audit spool; Run serves.
func New(cfg Config, policy PolicySource, inv InventorySource, logger *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if cfg.Shell == "" {
		cfg.Shell = os.Getenv("SHELL")
		if cfg.Shell == "" {
			cfg.Shell = "/bin/sh"
		}
	}
	if cfg.OpenTimeout == 0 {
		cfg.OpenTimeout = 30 * time.Second
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("session data directory: %w", err)
	}
	now := time.Now
	if cfg.Now != nil {
		now = cfg.Now
	}
	s := &Server{cfg: cfg, policy: policy, inv: inv, log: logger.With("component", "sessions"), now: now,
		revs: &wire.RevocationList{}, live: map[*liveSession]struct{}{}, ctx: context.Background(),
		refusals: rate.NewLimiter(refusalRate, refusalBurst),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_agent_sessions_total", Help: "Technician sessions by kind and result."}, []string{"kind", "result"}),
		cut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_agent_sessions_revoked_total", Help: "Live technician sessions ended by a revocation, or by a permission change that no longer allows them."}),
	}
	for _, c := range []prometheus.Collector{s.sessions, s.cut} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	// The list was verified before it was written; it is this host's own.
	if b, err := os.ReadFile(s.revPath()); err == nil {
		var sr wire.SignedRevocations
		var l wire.RevocationList
		if err := wire.Unmarshal(b, &sr); err != nil {
			return nil, fmt.Errorf("load revocation list %s: %w (delete it; the coordinator sends a new one)", s.revPath(), err)
		}
		if err := wire.Unmarshal(sr.GetList(), &l); err != nil {
			return nil, fmt.Errorf("load revocation list %s: %w (delete it; the coordinator sends a new one)", s.revPath(), err)
		}
		s.revs, s.signedRevs = &l, &sr
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("load revocation list: %w", err)
	}
	if err := s.loadAudit(); err != nil {
		return nil, err
	}
	s.loadSpent()
	return s, nil
}

// loadAudit reads the audit spool: the log, or a spool written before
// it (which the log then replaces).
//
// Nothing here keeps the agent from starting: a host whose disk is full
// must still check in and take the policy that frees it. What cannot be
// written is kept in memory and written with the next record.
func (s *Server) loadAudit() error {
	recs, cut, good, err := readSpool(s.auditPath())
	if errors.Is(err, os.ErrNotExist) {
		old := filepath.Join(s.cfg.DataDir, oldSpoolFile)
		if recs, err = readOldSpool(old); errors.Is(err, os.ErrNotExist) {
			return nil
		} else if err != nil {
			s.log.Error("audit spool is damaged; starting a new one", "path", old, "err", err)
			recs = nil
		}
		if err := writeSpool(s.auditPath(), recs); err != nil {
			s.log.Error("audit spool not written in its new form; kept in memory and tried again with the next record", "err", err)
			s.auditStale = true
		} else {
			_ = os.Remove(old)
		}
	} else if err != nil {
		return fmt.Errorf("load audit spool: %w", err)
	}
	if cut {
		s.log.Warn("audit spool ends in a record cut short (a crash while it was written): that record is lost", "path", s.auditPath(), "kept", len(recs))
		// Cut in place: it frees space rather than asking for it.
		if err := os.Truncate(s.auditPath(), good); err != nil {
			s.log.Error("cut the audit spool short of its damaged end", "err", err)
			s.auditStale = true
		}
	}
	// A spool written before records were bounded and escaped is held
	// to the same rules now.
	for _, r := range recs {
		boundRecord(r)
	}
	s.audit = recs
	return nil
}

func (s *Server) revPath() string   { return filepath.Join(s.cfg.DataDir, "revocations.signed.pb") }
func (s *Server) auditPath() string { return filepath.Join(s.cfg.DataDir, spoolFile) }

// Run keeps sessions alive until ctx ends, then ends them all.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	for l := range s.live {
		l.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// ErrStaleRevocations is a revocation list no newer than the one held.
var ErrStaleRevocations = errors.New("revocation list is not newer than the one held")

// SetRevocations takes a signed revocation list — from the coordinator or
// from an office peer: it must verify with a token key of the host's
// policy and be newer than the one held — and ends, at once, every live
// session it now refuses. It keeps the signed form, so the list can be
// passed on (Revocations) and survives a restart.
func (s *Server) SetRevocations(sr *wire.SignedRevocations) error {
	if sr == nil || len(sr.GetList()) == 0 {
		return ErrStaleRevocations // the coordinator has no users: nothing to take
	}
	s.mu.Lock()
	same := s.signedRevs != nil && bytes.Equal(sr.GetList(), s.signedRevs.GetList())
	s.mu.Unlock()
	if same {
		// The list this host holds, told again (every check-in answer
		// carries it): no need to check its signature again.
		return ErrStaleRevocations
	}
	p := s.policy.Policy()
	keys := map[string]ed25519.PublicKey{}
	for _, k := range p.GetTokenKeys() {
		keys[k.GetKeyId()] = k.GetPublicKey()
	}
	l, err := wire.VerifyRevocations(sr, keys)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if l.GetIssuedUnixMs() <= s.revs.GetIssuedUnixMs() {
		s.mu.Unlock()
		return ErrStaleRevocations
	}
	s.revs, s.signedRevs = l, sr
	var cut []*liveSession
	for ls := range s.live {
		if !ls.revoked && l.Revoked(ls.listedAs()) {
			ls.revoked = true
			ls.cancel()
			cut = append(cut, ls)
		}
	}
	s.mu.Unlock()
	for _, ls := range cut {
		s.cut.Inc()
		s.log.Info("live session ended: access revoked", "user", ls.user)
		s.record(ls.user, "revoked", "live session ended by the coordinator", true)
	}
	b, err := proto.Marshal(sr)
	if err == nil {
		err = fsutil.WriteFileAtomic(s.revPath(), b, 0o600)
	}
	if err != nil {
		s.log.Error("save revocation list", "err", err)
	}
	return nil
}

// Recheck ends, at once, every live session that the host's current
// policy no longer allows: a right taken away from the user or a group of
// theirs, or a deny added. The agent calls it for each policy it accepts.
func (s *Server) Recheck() {
	p := s.policy.Policy()
	s.mu.Lock()
	var cut []*liveSession
	for ls := range s.live {
		if ls.revoked || ls.withdrawn {
			continue
		}
		if why := s.stillAllowed(p, ls); why != "" {
			ls.withdrawn, ls.why = true, why
			ls.cancel()
			cut = append(cut, ls)
		}
	}
	s.mu.Unlock()
	for _, ls := range cut {
		s.cut.Inc()
		if ls.local {
			s.log.Info("live break-glass session ended: the user must now sign in on the coordinator", "user", ls.user)
			s.record(ls.user, "revoked", "live session ended: "+ls.why, true)
			continue
		}
		s.log.Info("live session ended: the host's permissions no longer allow it", "user", ls.user, "right", rightName(ls.need))
		s.record(ls.user, "revoked", "live session ended: the host's permissions no longer give the right "+rightName(ls.need), true)
	}
}

// Revocations is the signed list held (nil if none) and its issue time.
func (s *Server) Revocations() (*wire.SignedRevocations, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signedRevs, s.revs.GetIssuedUnixMs()
}

// Live is the number of sessions running now.
func (s *Server) Live() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

// record adds an audit record to the spool.
func (s *Server) record(user, action, detail string, allowed bool) {
	var id [8]byte
	_, _ = rand.Read(id[:])
	r := &wire.AuditRecord{Id: hex.EncodeToString(id[:]), AtUnixMs: s.now().UnixMilli(), User: user, Action: action,
		Detail: detail, Allowed: allowed, Host: s.cfg.MemberID}
	boundRecord(r)
	s.mu.Lock()
	s.audit = append(s.audit, r)
	full := len(s.audit) > maxAuditSpool
	if full {
		// Room for a tenth more at once: a full spool is written again
		// whole, not for every record.
		for len(s.audit) > maxAuditSpool*9/10 {
			s.audit = dropOne(s.audit)
		}
		if !s.auditFull {
			s.auditFull = true
			s.log.Warn("audit spool full: dropping records the coordinator has not acknowledged, refused attempts first", "records", maxAuditSpool)
		}
	}
	stale := s.auditStale
	s.mu.Unlock()
	if full || stale {
		s.rewriteAudit()
		return
	}
	s.saveMu.Lock()
	err := appendSpool(s.auditPath(), r)
	s.saveMu.Unlock()
	if err != nil {
		// Kept in memory, and written with the next record: appended
		// alone after it, this one would be lost at the next start.
		s.log.Error("save audit record; kept in memory and tried again with the next record", "err", err)
		s.mu.Lock()
		s.auditStale = true
		s.mu.Unlock()
	}
}

// boundRecord escapes what a terminal would act on in r's text and bounds
// it: the text is what technicians and, on the direct listener, anyone at
// all sent, and `outpost audit` shows it on an admin's terminal.
func boundRecord(r *wire.AuditRecord) {
	r.User = safetext.Field(r.GetUser(), maxAuditText)
	r.Action = safetext.Field(r.GetAction(), 64)
	r.Detail = safetext.Field(r.GetDetail(), maxAuditDetail)
}

// dropOne makes room in a full spool: the oldest refused attempt goes
// first, since attempts cost their sender nothing and must not push out
// the records of sessions that ran; only a spool of those alone loses its
// oldest.
func dropOne(recs []*wire.AuditRecord) []*wire.AuditRecord {
	for i, r := range recs {
		if !r.GetAllowed() {
			return slices.Delete(recs, i, i+1)
		}
	}
	return slices.Delete(recs, 0, 1)
}

// rewriteAudit writes the whole spool as it is now. The spool is taken
// under saveMu: a record added after it is appended after it is written.
func (s *Server) rewriteAudit() {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	recs := slices.Clone(s.audit)
	s.mu.Unlock()
	if err := writeSpool(s.auditPath(), recs); err != nil {
		s.log.Error("save audit spool; tried again with the next record", "err", err)
		s.mu.Lock()
		s.auditStale = true
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	s.auditStale = false
	s.mu.Unlock()
	_ = os.Remove(filepath.Join(s.cfg.DataDir, oldSpoolFile))
}

// PendingAudit is what the coordinator has not acknowledged yet.
func (s *Server) PendingAudit() []*wire.AuditRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*wire.AuditRecord(nil), s.audit...)
}

// AckAudit forgets records the coordinator stored.
func (s *Server) AckAudit(records []*wire.AuditRecord) {
	done := map[string]bool{}
	for _, r := range records {
		done[r.GetId()] = true
	}
	s.mu.Lock()
	keep := s.audit[:0]
	for _, r := range s.audit {
		if !done[r.GetId()] {
			keep = append(keep, r)
		}
	}
	gone := len(s.audit) - len(keep)
	clear(s.audit[len(keep):])
	s.audit = keep
	if len(s.audit) < maxAuditSpool {
		s.auditFull = false
	}
	s.mu.Unlock()
	if gone > 0 {
		s.rewriteAudit()
	}
}

// out serialises frames from the goroutines of one session and counts
// the output and file bytes sent, for the session's audit record.
type out struct {
	mu   sync.Mutex
	w    io.Writer
	sent int64
}

func (o *out) send(m *wire.SessionOutput) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	err := wire.WriteMsg(o.w, m)
	if err == nil {
		o.sent += int64(len(m.GetStdout()) + len(m.GetStderr()) + len(m.GetFileData()))
	}
	return err
}

func (o *out) bytesSent() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sent
}

func (o *out) end(code int32, errText string, denied, revoked bool) {
	_ = o.send(&wire.SessionOutput{Body: &wire.SessionOutput_End{End: &wire.SessionEnd{ExitCode: code, Error: errText, Denied: denied, Revoked: revoked}}})
}

// denial is a refusal whose text is safe to show the technician.
type denial struct{ msg string }

func (d *denial) Error() string { return d.msg }

func deny(format string, args ...any) error { return &denial{fmt.Sprintf(format, args...)} }

// authorize checks the token and the host's permission lists for open.
func (s *Server) authorize(open *wire.SessionOpen, remote string) (*wire.AccessToken, Rights, error) {
	if open.GetToken() == "" && open.GetLocalUser() != "" {
		at, rights, err := s.breakGlass(open, remote)
		if err == nil && !rights[needs(open.GetKind())] {
			return at, rights, deny("unknown session kind %v", open.GetKind())
		}
		return at, rights, err
	}
	p := s.policy.Policy()
	if p == nil || len(p.GetTokenKeys()) == 0 {
		return nil, nil, deny("this host has no policy with technician access yet: ask an admin to set permissions for its office (outpost perm set)")
	}
	keys := map[string]ed25519.PublicKey{}
	for _, k := range p.GetTokenKeys() {
		keys[k.GetKeyId()] = k.GetPublicKey()
	}
	at, err := wire.VerifyToken(open.GetToken(), keys, s.now())
	if err != nil {
		return nil, nil, deny("%v", err)
	}
	// From here the token is the coordinator's word on who the user is:
	// every refusal names them, for the audit trail.
	//
	// Only a session token signed for this host: an access token is for
	// the coordinator, and a token meant for another host must not open
	// a session here (a host sees every token shown to it).
	if at.GetAudience() != s.cfg.MemberID {
		if at.GetAudience() == "" {
			return at, nil, deny("an access token opens no session on a host: the coordinator signs a session token for it (update the outpost CLI)")
		}
		return at, nil, deny("the session token is for host %s, not this one", at.GetAudience())
	}
	s.mu.Lock()
	revoked := s.revs.Revoked(at)
	s.mu.Unlock()
	if revoked {
		return at, nil, deny("access of %s was revoked by the coordinator: sign in again (outpost login), or ask an admin", at.GetUser())
	}
	rights := Decide(p.GetPermissions(), s.cfg.MemberID, at.GetUser(), at.GetGroups())
	need := needs(open.GetKind())
	if need == wire.Right_RIGHT_UNSPECIFIED {
		return at, rights, deny("unknown session kind %v", open.GetKind())
	}
	if !rights[need] {
		return at, rights, deny("%s may not %s on this host (needs the %s right): ask an admin (outpost perm)", at.GetUser(), kindVerb(open.GetKind()), rightName(need))
	}
	if err := s.spend(at); err != nil {
		return at, rights, err
	}
	return at, rights, nil
}

// spend marks a session token used: it opens one session, the one the
// coordinator signed it for, and whoever else saw it (it crossed the CLI
// and the coordinator's answer) cannot open more with it while it lasts.
// The ids are kept, in memory and on disk, until their tokens expire; a
// restart does not make a token new. A token without one comes
// from a coordinator that does not say, and is taken as before.
func (s *Server) spend(at *wire.AccessToken) error {
	id := at.GetTokenId()
	if id == "" {
		return nil
	}
	now := s.now().UnixMilli()
	s.mu.Lock()
	if exp, ok := s.spent[id]; ok && exp > now {
		s.mu.Unlock()
		return deny("this session token was used already: each opens one session; run the command again for a new one")
	}
	if len(s.spent) >= maxSpentTokens {
		for k, exp := range s.spent {
			if exp <= now {
				delete(s.spent, k)
			}
		}
		if len(s.spent) >= maxSpentTokens {
			s.mu.Unlock()
			return deny("this host took %d sessions within two minutes, more than it keeps track of: wait a minute and try again", maxSpentTokens)
		}
	}
	if s.spent == nil {
		s.spent = map[string]int64{}
	}
	s.spent[id] = at.GetExpiresUnixMs()
	s.spentVersion++
	version, ids := s.spentVersion, make(map[string]int64, len(s.spent))
	for k, exp := range s.spent {
		if exp > now {
			ids[k] = exp
		}
	}
	s.mu.Unlock()
	s.saveSpent(ids, version)
	return nil
}

func rightName(r wire.Right) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "RIGHT_"))
}

func kindName(k wire.SessionOpen_Kind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "KIND_"))
}

func kindVerb(k wire.SessionOpen_Kind) string {
	switch k {
	case wire.SessionOpen_KIND_EXEC:
		return "run commands"
	case wire.SessionOpen_KIND_SHELL:
		return "open a shell"
	case wire.SessionOpen_KIND_PUT, wire.SessionOpen_KIND_GET:
		return "transfer files"
	case wire.SessionOpen_KIND_INVENTORY:
		return "view the inventory"
	case wire.SessionOpen_KIND_REBOOT:
		return "reboot the host"
	case wire.SessionOpen_KIND_SYNC:
		return "run the policy"
	}
	return "do that"
}

// Serve runs one session on rw: the technician's SessionOpen, then the
// session. abort unblocks a pending read of rw once the session is over
// (for a QUIC stream, cancelling its read side). It returns when the
// session has ended.
func (s *Server) Serve(ctx context.Context, rw io.ReadWriteCloser, abort func()) {
	s.wg.Add(1)
	defer s.wg.Done()
	defer abort()
	defer rw.Close()
	o := &out{w: rw}

	timer := time.AfterFunc(s.cfg.OpenTimeout, abort)
	var open wire.SessionOpen
	err := wire.ReadMsgMax(rw, &open, wire.MaxSessionOpenSize)
	timer.Stop()
	if err != nil {
		s.sessions.WithLabelValues("unknown", "bad_request").Inc()
		return
	}
	kind := kindName(open.GetKind())
	remote := remoteOf(ctx)
	at, rights, err := s.authorize(&open, remote)
	user := at.GetUser()
	switch {
	case user == "" && open.GetToken() == "" && open.GetLocalUser() != "":
		user = "local:" + safetext.Field(open.GetLocalUser(), 64) // who break-glass was tried as
	case user == "":
		user = "?"
	}
	detail := describe(&open)
	if remote != "" {
		detail += " (from " + remote + ")"
	}
	if err != nil {
		s.refuse(o, user, kind, detail, err.Error(), false)
		return
	}

	s.mu.Lock()
	parent := s.ctx
	s.mu.Unlock()
	sctx, cancelCause := context.WithCancelCause(ctx)
	cancel := func() { cancelCause(nil) }
	stop := context.AfterFunc(parent, cancel)
	defer stop()
	defer cancel()
	ls := &liveSession{user: at.GetUser(), token: at, cancel: cancel, kind: open.GetKind(), need: needs(open.GetKind()), local: open.GetToken() == ""}
	s.mu.Lock()
	// A revocation may have arrived between the check and now, and so may
	// a policy that takes the right away (Recheck runs only over sessions
	// already live).
	if s.revs.Revoked(ls.listedAs()) {
		s.mu.Unlock()
		s.refuse(o, user, kind, detail, "access was revoked by the coordinator", true)
		return
	}
	if why := s.stillAllowed(s.policy.Policy(), ls); why != "" {
		s.mu.Unlock()
		s.refuse(o, user, kind, detail, why, false)
		return
	}
	s.live[ls] = struct{}{}
	s.mu.Unlock()
	ended := false
	end := func() (revoked, withdrawn bool, why string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !ended {
			delete(s.live, ls)
			ended = true
		}
		return ls.revoked, ls.withdrawn, ls.why
	}
	defer end()

	s.record(at.GetUser(), kind, detail, true)
	s.log.Info("technician session", "user", at.GetUser(), "kind", kind, "detail", detail)
	if err := o.send(&wire.SessionOutput{Body: &wire.SessionOutput_Accepted{Accepted: &wire.SessionAccepted{User: at.GetUser(), Rights: rights.List()}}}); err != nil {
		return
	}
	// Cancelling ends a command at once, but a copy waits on the stream
	// between frames: on a technician who sends nothing, or reads nothing.
	// A session cut by a revocation or a permission change (or by the
	// agent stopping) stops reading the stream and gives its writes a
	// moment only, so that it ends at once whatever it was doing. A read
	// deadline rather than abort where the stream has one: the technician
	// is still told why the session ended.
	dl, _ := rw.(deadlines)
	stopCut := context.AfterFunc(sctx, func() {
		if dl == nil {
			abort()
			return
		}
		_ = dl.SetReadDeadline(time.Now())
		_ = dl.SetWriteDeadline(time.Now().Add(cutWriteGrace))
	})
	// A stream that tells when its technician went away (a QUIC stream's
	// context ends when their side stops reading, or their connection is
	// lost) ends the session then, even while it is not read: input that
	// a command does not read holds back whatever follows it, the end of
	// the stream too.
	if c, ok := rw.(interface{ Context() context.Context }); ok {
		defer context.AfterFunc(c.Context(), func() { cancelCause(errTechnicianGone) })()
	}
	// By the monotonic clock: s.now follows the coordinator's time, which
	// moves when a check-in (which a sync makes) corrects it.
	started := time.Now()
	var received int64
	code, runErr := s.run(sctx, &open, at.GetUser(), rw, o, &received)
	cut := !stopCut()
	// The session's work is over: it is no longer live, whatever telling
	// the technician takes.
	revoked, withdrawn, why := end()
	// A technician who stops reading must not hold the session open: the
	// work is over (a revoked session's processes are already killed).
	if dl != nil && !cut {
		_ = dl.SetWriteDeadline(time.Now().Add(10 * time.Second))
	}
	if open.GetKind() != wire.SessionOpen_KIND_INVENTORY || runErr != nil {
		s.record(at.GetUser(), kind+".end", detail+": "+outcome(open.GetKind(), code, runErr, revoked || withdrawn, time.Since(started), o.bytesSent(), received), true)
	}
	switch {
	case revoked:
		s.sessions.WithLabelValues(kind, "revoked").Inc()
		o.end(-1, "session ended: your access was revoked by the coordinator", false, true)
	case withdrawn:
		s.sessions.WithLabelValues(kind, "revoked").Inc()
		o.end(-1, "session ended: "+why, false, true)
	case runErr != nil:
		s.sessions.WithLabelValues(kind, "error").Inc()
		o.end(code, runErr.Error(), false, false)
	default:
		s.sessions.WithLabelValues(kind, "ok").Inc()
		o.end(code, "", false, false)
	}
}

// deadlines are what a QUIC stream and a net.Conn have to unblock a read
// or a write that waits on the technician.
type deadlines interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// cutWriteGrace is how long a session cut while it ran may still write:
// enough for the rest of a frame and the word that it was cut to reach a
// technician who reads, not enough for one who does not to hold it.
const cutWriteGrace = time.Second

// Refused attempts recorded one by one: a few a second, more in a burst.
const (
	refusalRate  = rate.Limit(5)
	refusalBurst = 50
)

// refuse turns a session down: counted, told the technician, and
// recorded; past refusalRate only counted, and the count recorded with
// the next one that is.
func (s *Server) refuse(o *out, user, kind, detail, why string, revoked bool) {
	s.sessions.WithLabelValues(kind, "denied").Inc()
	s.mu.Lock()
	now := s.now()
	one := s.refusals.AllowN(now, 1)
	skipped, since := s.unrecorded, s.unrecSince
	if one {
		s.unrecorded = 0
	} else {
		if s.unrecorded == 0 {
			s.unrecSince = now
		}
		s.unrecorded++
	}
	s.mu.Unlock()
	if one {
		if skipped > 0 {
			s.record("?", "refused", fmt.Sprintf("%d more refused attempts since %s, too many to record one by one", skipped, since.UTC().Format(time.RFC3339)), false)
		}
		s.record(user, kind, detail+": refused: "+why, false)
		s.log.Info("technician session refused", "user", user, "kind", kind, "why", why)
	} else {
		s.log.Debug("technician session refused; not recorded one by one", "user", user, "kind", kind, "why", why)
	}
	o.end(-1, why, true, revoked)
}

// shellQuote joins argv as a shell would read it back: an argument with
// anything but plain characters in single quotes.
func shellQuote(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-") == "" {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}

// describe is what a session asks, for its audit records. Each piece the
// technician chose is escaped and bounded here, before the record is
// (which bounds the whole): a path of any length still leaves room for
// how the session ended.
func describe(open *wire.SessionOpen) string {
	switch open.GetKind() {
	case wire.SessionOpen_KIND_EXEC:
		return "exec " + safetext.Field(shellQuote(open.GetArgv()), maxAuditText)
	case wire.SessionOpen_KIND_PUT:
		// Told before the session is allowed: nothing on the host is
		// looked at for it.
		path := safetext.Field(open.GetPath(), maxAuditText)
		if n := open.GetName(); bareName(n) {
			// 255 bytes: the longest file name the host's file systems take.
			return "put " + path + " (file " + safetext.Field(n, 255) + ")"
		}
		return "put " + path
	case wire.SessionOpen_KIND_GET:
		return "get " + safetext.Field(open.GetPath(), maxAuditText)
	case wire.SessionOpen_KIND_REBOOT:
		if open.GetCancel() {
			return "reboot cancel"
		}
		d := "reboot now"
		if delay := rebootDelay(open); delay > 0 {
			d = "reboot in " + delay.String()
		}
		if r := open.GetReason(); r != "" {
			d += ": " + clipReason(r)
		}
		return d
	}
	return kindName(open.GetKind())
}

// rebootDelay is how long a reboot waits: whole minutes, as shutdown
// schedules them, and at most maxRebootDelay.
func rebootDelay(open *wire.SessionOpen) time.Duration {
	d := time.Duration(min(open.GetDelaySeconds(), maxRebootDelay)) * time.Second
	return (d + time.Minute - 1).Truncate(time.Minute)
}

// maxReason bounds what a reboot tells the host's users.
const maxReason = 200

// clipReason is a reboot's reason as it is told and recorded: one line of
// printable characters, at most maxReason bytes.
func clipReason(r string) string {
	// Control characters (C0, C1: a CSI reaches every terminal shutdown
	// writes to), format characters such as bidi overrides, and invalid
	// bytes all become spaces.
	r = strings.Map(func(c rune) rune {
		if !unicode.IsPrint(c) || c == utf8.RuneError {
			return ' '
		}
		return c
	}, r)
	if len(r) > maxReason {
		r = r[:maxReason]
		for !utf8.ValidString(r) {
			r = r[:len(r)-1]
		}
		r += "..."
	}
	return strings.TrimSpace(r)
}

// outcome is how a session ended, for its audit record: the exit status
// or the error, how long it ran, and the bytes it moved.
func outcome(kind wire.SessionOpen_Kind, code int32, err error, revoked bool, took time.Duration, sent, received int64) string {
	if took < time.Minute {
		took = took.Round(100 * time.Millisecond)
	} else {
		took = took.Round(time.Second)
	}
	var how, why string
	switch {
	case revoked:
		how = "ended by a revocation"
	case err != nil:
		how, why = "failed", err.Error()
		if len(why) > 300 {
			why = why[:300] + "..."
		}
	case kind == wire.SessionOpen_KIND_GET || kind == wire.SessionOpen_KIND_PUT:
		how = "done"
	default:
		how = fmt.Sprintf("exit %d", code)
	}
	how += " after " + took.String()
	switch kind {
	case wire.SessionOpen_KIND_PUT:
		how += ", " + sizeIEC(received) + " received"
	case wire.SessionOpen_KIND_GET:
		how += ", " + sizeIEC(sent) + " sent"
	case wire.SessionOpen_KIND_EXEC, wire.SessionOpen_KIND_SHELL:
		how += ", " + sizeIEC(sent) + " of output"
	}
	if kind == wire.SessionOpen_KIND_REBOOT || kind == wire.SessionOpen_KIND_SYNC {
		how = strings.Replace(how, "exit 0", "done", 1)
	}
	if why != "" {
		how += ": " + why
	}
	return how
}

// sizeIEC is n in bytes, KiB, MiB or GiB, to three figures.
func sizeIEC(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f, unit := float64(n)/1024, "KiB"
	for _, u := range []string{"MiB", "GiB", "TiB"} {
		if f < 1024 {
			break
		}
		f, unit = f/1024, u
	}
	if f < 10 {
		return fmt.Sprintf("%.2f %s", f, unit)
	}
	if f < 100 {
		return fmt.Sprintf("%.1f %s", f, unit)
	}
	return fmt.Sprintf("%.0f %s", f, unit)
}

func (s *Server) run(ctx context.Context, open *wire.SessionOpen, technician string, in io.Reader, o *out, received *int64) (int32, error) {
	switch open.GetKind() {
	case wire.SessionOpen_KIND_EXEC:
		if len(open.GetArgv()) == 0 {
			return -1, errors.New("no command given")
		}
		if t := open.GetTerminal(); t != nil {
			return runTerminal(ctx, open.GetArgv(), s.sessionEnv(technician), t, in, o)
		}
		return runCommand(ctx, open.GetArgv(), s.sessionEnv(technician), in, o)
	case wire.SessionOpen_KIND_SHELL:
		if t := open.GetTerminal(); t != nil {
			return runTerminal(ctx, []string{s.cfg.Shell, "-i"}, s.sessionEnv(technician), t, in, o)
		}
		return runCommand(ctx, []string{s.cfg.Shell}, s.sessionEnv(technician), in, o)
	case wire.SessionOpen_KIND_INVENTORY:
		inv := s.inv.Inventory()
		return 0, o.send(&wire.SessionOutput{Body: &wire.SessionOutput_Inventory{Inventory: inv}})
	case wire.SessionOpen_KIND_GET:
		return getFile(ctx, open.GetPath(), o)
	case wire.SessionOpen_KIND_PUT:
		return putFile(ctx, open.GetPath(), open.GetName(), open.GetMode(), in, received)
	case wire.SessionOpen_KIND_SYNC:
		if s.cfg.Actions == nil {
			return -1, errors.New("this host's agent does not run its policy for technicians")
		}
		rep, err := s.cfg.Actions.Sync(ctx)
		if err != nil {
			return -1, err
		}
		b, err := proto.Marshal(rep)
		if err != nil {
			return -1, err
		}
		return 0, o.send(&wire.SessionOutput{Body: &wire.SessionOutput_Report{Report: b}})
	case wire.SessionOpen_KIND_REBOOT:
		if s.cfg.Actions == nil {
			return -1, errors.New("this host's agent does not reboot for technicians")
		}
		if open.GetCancel() {
			if err := s.cfg.Actions.CancelReboot(ctx); err != nil {
				return -1, fmt.Errorf("cancel the reboot: %w", err)
			}
			return 0, o.send(&wire.SessionOutput{Body: &wire.SessionOutput_Stdout{Stdout: []byte("reboot cancelled\n")}})
		}
		delay := rebootDelay(open)
		reason := clipReason(open.GetReason())
		if reason == "" {
			reason = "a technician reboots this computer"
		}
		if err := s.cfg.Actions.Reboot(ctx, "outpost: "+reason, delay); err != nil {
			return -1, fmt.Errorf("reboot: %w", err)
		}
		when := "now"
		if delay > 0 {
			when = "in " + delay.String()
		}
		return 0, o.send(&wire.SessionOutput{Body: &wire.SessionOutput_Stdout{Stdout: []byte("rebooting " + when + "\n")}})
	}
	return -1, fmt.Errorf("unknown session kind %v", open.GetKind())
}

type remoteKey struct{}

// WithRemote tells Serve where a direct session comes from, for its audit
// records and break-glass limits.
func WithRemote(ctx context.Context, addr net.Addr) context.Context {
	host := addr.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return context.WithValue(ctx, remoteKey{}, host)
}

func remoteOf(ctx context.Context) string {
	s, _ := ctx.Value(remoteKey{}).(string)
	return s
}

// Go runs f as part of the server, so that Run waits for it.
func (s *Server) Go(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// sessionEnv is the environment of a technician's command or shell: the
// agent's own, with what a login sets for the account the agent runs as
// (a service manager starts the agent without HOME or USER), a PATH when
// the agent has none, and who the technician is, for prompts and scripts
// (OUTPOST_USER; local:NAME for break-glass).
func (s *Server) sessionEnv(technician string) []string {
	env := os.Environ()
	if u, err := user.Current(); err == nil {
		if u.HomeDir != "" {
			env = setEnv(env, "HOME", u.HomeDir)
		}
		env = setEnv(env, "USER", u.Username)
		env = setEnv(env, "LOGNAME", u.Username)
	}
	env = setEnv(env, "SHELL", s.cfg.Shell)
	if os.Getenv("PATH") == "" {
		env = setEnv(env, "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	return setEnv(env, "OUTPOST_USER", technician)
}

// setEnv sets key to value in env, replacing what env had for it.
func setEnv(env []string, key, value string) []string {
	out := env[:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}
