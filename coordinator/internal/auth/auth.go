// Package auth is the coordinator's authorization server: users and their
// API roles, password sign-in with Argon2id, rate limiting and lockout,
// short-lived Ed25519-signed access tokens with key ids, rotating refresh
// tokens with replay detection, token revocation, and the audit trail of
// sign-ins and admin changes. It keeps its state in the store; it knows
// nothing of HTTP or QUIC, and it does not decide host permissions (agents
// do, from their signed policy).
package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/safetext"
	"github.com/outposthq/outpost/pkg/wire"
)

// API roles, weakest first. A technician has no role: it signs in and
// connects to hosts, nothing more.
const (
	RoleNone     = ""
	RoleReadOnly = "read-only"
	RoleOperator = "operator"
	RoleAdmin    = "admin"
)

// RoleRank orders roles; unknown roles rank below every real one.
func RoleRank(role string) int {
	switch role {
	case RoleReadOnly:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// ValidRole says whether role can be given to a user.
func ValidRole(role string) bool {
	return role == RoleNone || RoleRank(role) > 0
}

// BootstrapUser is the first admin, created at first start; the admin
// token in the data directory signs in as it.
const BootstrapUser = "admin"

var userName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ValidName says whether s can name a user or a group.
func ValidName(s string) bool { return userName.MatchString(s) }

// Errors a sign-in or a token is refused with. Their text is safe to show.
var (
	ErrBadCredentials = errors.New("user name or password is wrong")
	ErrDisabled       = errors.New("this account is disabled: ask an admin")
	ErrRateLimited    = errors.New("too many sign-in attempts: wait a minute and try again")
	ErrRevoked        = errors.New("access token was revoked: sign in again (outpost login)")
	ErrRefreshInvalid = errors.New("refresh token is not valid: sign in again (outpost login)")
	ErrRefreshReplay  = errors.New("refresh token was used twice, so every token of that sign-in is revoked: sign in again (outpost login)")
)

// LockedError says until when an account is locked.
type LockedError struct{ Until time.Time }

func (e *LockedError) Error() string {
	return fmt.Sprintf("account is locked after repeated failed sign-ins until %s: wait or ask an admin to unlock it", e.Until.UTC().Format(time.RFC3339))
}

// Config tunes the server.
type Config struct {
	AccessTTL  time.Duration
	RefreshTTL time.Duration
	// MaxFailures consecutive failed sign-ins lock the account for LockFor.
	MaxFailures int
	LockFor     time.Duration
	// PerMinute bounds sign-in attempts per user name and per address.
	PerMinute int
	KDF       KDF
	// Issuer names this coordinator in its tokens (its CA fingerprint).
	Issuer string
}

// DefaultConfig is what a coordinator runs with.
func DefaultConfig() Config {
	return Config{AccessTTL: 10 * time.Minute, RefreshTTL: 12 * time.Hour, MaxFailures: 5, LockFor: 15 * time.Minute,
		PerMinute: 10, KDF: DefaultKDF()}
}

// Tokens are what a sign-in or a refresh returns.
type Tokens struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	Expires      time.Time `json:"expires"`
	User         string    `json:"user"`
	Role         string    `json:"role"`
	Groups       []string  `json:"groups"`
	KeyID        string    `json:"key_id"`
}

// Server is the authorization server.
type Server struct {
	cfg Config
	st  *store.Store
	key ed25519.PrivateKey
	kid string
	log *slog.Logger
	now func() time.Time
	// limit and failures count failed sign-ins per name and per address.
	limit    *limiter
	failures *limiter
	// attemptMu makes checking both limits and counting an attempt
	// against both one step.
	attemptMu sync.Mutex
	// inflight lets one sign-in per name check its password at a time.
	inflight nameLocks
	// hashing bounds concurrent Argon2id runs: each takes KDF.MemoryKiB.
	hashing chan struct{}
	// dummy is verified for unknown users, so that timing does not tell
	// which names exist.
	dummy string
	// revMu guards the last signed revocation list, handed out again
	// while the list is the same (see SignedRevocations).
	revMu     sync.Mutex
	revList   *wire.RevocationList
	revSigned *wire.SignedRevocations

	logins *prometheus.CounterVec

	// pruneMu guards pruned, when expired refresh tokens were last
	// deleted (each refresh stores a token; spent ones stay until they
	// expire, for replay detection).
	pruneMu sync.Mutex
	pruned  time.Time

	// limitedMu guards the recording of sign-ins the rate limit refused:
	// each costs its sender nothing, so past limitedBurst at once (then
	// limitedRate) they are counted, and the count recorded with the
	// next one that is.
	limitedMu      sync.Mutex
	limitedRecords *rate.Limiter
	unrecorded     int
	unrecSince     time.Time
	// unrecRemote is the address the counted sign-ins came from, "" when
	// they came from several.
	unrecRemote string
}

// Sign-ins refused by the rate limit recorded one by one.
const (
	limitedRate  = rate.Limit(1)
	limitedBurst = 50
)

// pruneEvery is how often issuing tokens deletes the expired ones.
const pruneEvery = time.Hour

// New builds the server over st with the token-signing key.
func New(cfg Config, st *store.Store, key ed25519.PrivateKey, logger *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("auth: token-signing key is missing")
	}
	if err := st.InitAuth(); err != nil {
		return nil, err
	}
	var err error
	s := &Server{cfg: cfg, st: st, key: key, kid: wire.KeyID(key.Public().(ed25519.PublicKey)),
		log: logger.With("component", "auth"), now: time.Now, limit: newLimiter(cfg.PerMinute, time.Minute),
		failures:       newLimiter(3*cfg.PerMinute, time.Minute),
		hashing:        make(chan struct{}, 4),
		limitedRecords: rate.NewLimiter(limitedRate, limitedBurst),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_coordinator_signins_total", Help: "Sign-in attempts by result."}, []string{"result"}),
	}
	if s.dummy, err = HashPassword("not-a-password-of-anyone", cfg.KDF); err != nil {
		return nil, err
	}
	if err := reg.Register(s.logins); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	return s, nil
}

// SetClock replaces the clock (tests).
func (s *Server) SetClock(now func() time.Time) { s.now = now }

// KDF is the parameter set for new password hashes.
func (s *Server) KDF() KDF { return s.cfg.KDF }

// LoadOrCreateKey reads the token-signing key at path, creating it (0600)
// on first start.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) != ed25519.SeedSize {
			return nil, fmt.Errorf("token key %s is damaged (%d bytes); delete it to make a new one (signed-in users sign in again)", path, len(b))
		}
		return ed25519.NewKeyFromSeed(b), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read token key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(path, priv.Seed(), 0o600); err != nil {
		return nil, fmt.Errorf("write token key: %w", err)
	}
	return priv, nil
}

// TokenKeys are the public keys hosts trust for access tokens.
func (s *Server) TokenKeys() []*wire.TokenKey {
	return []*wire.TokenKey{{KeyId: s.kid, PublicKey: []byte(s.key.Public().(ed25519.PublicKey))}}
}

// Bootstrap creates the first admin on first start.
func (s *Server) Bootstrap() error {
	users, err := s.st.Users()
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return nil
	}
	err = s.st.CreateUser(store.User{Name: BootstrapUser, Role: RoleAdmin, Created: s.now().UTC()})
	if err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("create the first admin: %w", err)
	}
	s.Audit(store.AuditEvent{Actor: "coordinator", Action: "user.create", Target: BootstrapUser, Detail: "first admin, signs in with admin.token", Allowed: true})
	s.log.Info("first admin created; it signs in with the admin token until it has a password", "user", BootstrapUser)
	return nil
}

// Audit records an event on the coordinator; a failure is logged, not fatal.
func (s *Server) Audit(ev store.AuditEvent) {
	if ev.Action == "login" {
		s.flushUnrecorded()
	}
	s.appendAudit(ev)
}

func (s *Server) appendAudit(ev store.AuditEvent) {
	// What others sent is kept bounded, and written out where a terminal
	// would act on it (outpost audit shows it on an admin's).
	ev.Actor = safetext.Field(ev.Actor, 128)
	ev.Target = safetext.Field(ev.Target, 512)
	ev.Detail = safetext.Field(ev.Detail, 4096)
	if ev.At.IsZero() {
		ev.At = s.now().UTC()
	}
	if ev.Source == "" {
		ev.Source = "coordinator"
	}
	if err := s.st.AppendAudit(ev); err != nil {
		s.log.Error("record audit event", "action", ev.Action, "err", err)
	}
}

// auditLimited records a sign-in the rate limit refused, or counts it
// when too many come at once (a scanner, a script that loops): one
// durable record each would grow the store without bound at no cost to
// the sender.
func (s *Server) auditLimited(name, remote string, now time.Time) {
	s.limitedMu.Lock()
	if !s.limitedRecords.AllowN(now, 1) {
		if s.unrecorded == 0 {
			s.unrecSince, s.unrecRemote = now, remote
		} else if s.unrecRemote != remote {
			s.unrecRemote = ""
		}
		s.unrecorded++
		s.limitedMu.Unlock()
		return
	}
	s.limitedMu.Unlock()
	s.Audit(store.AuditEvent{Actor: name, Action: "login", Detail: "rate limited", Remote: remote})
}

// flushUnrecorded records how many sign-ins the rate limit refused
// without a record each, before the next sign-in record, with the address
// they came from (not the next sign-in's).
func (s *Server) flushUnrecorded() {
	s.limitedMu.Lock()
	skipped, since, remote := s.unrecorded, s.unrecSince, s.unrecRemote
	s.unrecorded = 0
	s.limitedMu.Unlock()
	if skipped > 0 {
		s.appendAudit(store.AuditEvent{Actor: "?", Action: "login", Remote: remote,
			Detail: fmt.Sprintf("%d more sign-ins refused by the rate limit since %s, too many to record one by one", skipped, since.UTC().Format(time.RFC3339))})
	}
}

// Login checks a password and issues tokens.
//
// Concurrent attempts cannot outrun the limits: an attempt is counted
// against the name and the address before its password is checked (in one
// step with the check of the limits, so no more than the limit pass at
// once), and only one password of a name is checked at a time, with the
// account's lock read after waiting for the one before. A success gives
// its count back.
func (s *Server) Login(name, password, remote string) (*Tokens, error) {
	result := "error"
	defer func() { s.logins.WithLabelValues(result).Inc() }()
	if !ValidName(name) {
		// No user has such a name: it is answered as an unknown one, and
		// kept (in the limits and the audit) as a short text that no user
		// can have, since anyone may send a megabyte of it.
		name = "?" + safetext.Field(name, 48)
	}
	now := s.now()
	// Failures count against the name and the address; successes do not,
	// so that an office behind one NAT can still sign in.
	giveBack, ok := s.reserveAttempt(name, remote, now)
	if !ok {
		result = "rate_limited"
		s.auditLimited(name, remote, now)
		return nil, ErrRateLimited
	}
	// One password check per name at a time, for unknown names too, so
	// that they take as long as known ones.
	defer s.inflight.lock(name)()
	now = s.now()
	u, err := s.st.User(name)
	if errors.Is(err, store.ErrNotFound) {
		s.verify(s.dummy, password, true)
		result = "bad_credentials"
		s.Audit(store.AuditEvent{Actor: name, Action: "login", Detail: "unknown user", Remote: remote})
		return nil, ErrBadCredentials
	}
	if err != nil {
		return nil, err
	}
	if now.Before(u.LockedUntil) {
		result = "locked"
		s.Audit(store.AuditEvent{Actor: name, Action: "login", Detail: "account locked", Remote: remote})
		return nil, &LockedError{Until: u.LockedUntil}
	}
	if u.PasswordHash == "" {
		// No password to check: as long as a check all the same, so that
		// the answer's time does not tell such an account from others.
		s.verify(s.dummy, password, true)
		ok = false
	} else {
		ok = s.verify(u.PasswordHash, password, false)
	}
	now = s.now()
	if !ok {
		var locked time.Time
		_, err := s.st.UpdateUser(name, func(u *store.User) error {
			u.FailedLogins++
			if u.FailedLogins >= s.cfg.MaxFailures {
				u.LockedUntil = now.Add(s.cfg.LockFor)
				u.FailedLogins = 0
				locked = u.LockedUntil
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		result = "bad_credentials"
		detail := "wrong password"
		if !locked.IsZero() {
			detail += "; account locked until " + locked.UTC().Format(time.RFC3339)
			s.log.Warn("account locked after repeated failed sign-ins", "user", name, "until", locked, "remote", remote)
		}
		s.Audit(store.AuditEvent{Actor: name, Action: "login", Detail: detail, Remote: remote})
		return nil, ErrBadCredentials
	}
	// The account as it is after the check: refuse it if it was deleted,
	// locked or disabled meanwhile; reset its failures in one step with a
	// last look at the lock.
	u, err = s.st.User(name)
	if err == nil && !now.Before(u.LockedUntil) && !u.Disabled && u.FailedLogins > 0 {
		u, err = s.st.UpdateUser(name, func(u *store.User) error {
			if now.Before(u.LockedUntil) {
				return &LockedError{Until: u.LockedUntil}
			}
			u.FailedLogins = 0
			return nil
		})
	}
	var le *LockedError
	switch {
	case errors.Is(err, store.ErrNotFound):
		result = "bad_credentials"
		s.Audit(store.AuditEvent{Actor: name, Action: "login", Detail: "unknown user", Remote: remote})
		return nil, ErrBadCredentials
	case errors.As(err, &le):
	case err != nil:
		return nil, err
	case now.Before(u.LockedUntil):
		le = &LockedError{Until: u.LockedUntil}
	}
	if le != nil {
		result = "locked"
		s.Audit(store.AuditEvent{Actor: name, Action: "login", Detail: "account locked", Remote: remote})
		return nil, le
	}
	if u.Disabled {
		result = "disabled"
		s.Audit(store.AuditEvent{Actor: name, Action: "login", Detail: "account disabled", Remote: remote})
		return nil, ErrDisabled
	}
	family := randomID(16)
	t, err := s.issue(u, family)
	if err != nil {
		return nil, err
	}
	giveBack()
	result = "ok"
	s.Audit(store.AuditEvent{Actor: name, Action: "login", Allowed: true, Remote: remote})
	return t, nil
}

// reserveAttempt counts a sign-in attempt against the name and the address
// unless either is over its limit, in one step, so that concurrent attempts
// cannot all pass the check before any is counted. giveBack uncounts it.
func (s *Server) reserveAttempt(name, remote string, now time.Time) (giveBack func(), ok bool) {
	userKey, addrKey := "user/"+name, "addr/"+limitSource(remote)
	s.attemptMu.Lock()
	defer s.attemptMu.Unlock()
	if s.limit.exceeded(userKey, now) || s.failures.exceeded(addrKey, now) {
		return nil, false
	}
	userWindow := s.limit.count(userKey, now)
	addrWindow := s.failures.count(addrKey, now)
	return func() {
		s.limit.uncount(userKey, userWindow)
		s.failures.uncount(addrKey, addrWindow)
	}, true
}

// limitSource is what the per-address limit counts remote as: an IPv6
// client has a whole /64 to send from, so it counts as one source (as
// hosts count break-glass failures).
func limitSource(remote string) string {
	a, err := netip.ParseAddr(remote)
	if err != nil || !a.Is6() || a.Is4In6() {
		return remote
	}
	p, err := a.Prefix(64)
	if err != nil {
		return remote
	}
	return p.String()
}

func (s *Server) verify(hash, password string, dummy bool) bool {
	s.hashing <- struct{}{}
	defer func() { <-s.hashing }()
	ok, err := VerifyPassword(hash, password)
	if err != nil && !dummy {
		s.log.Error("verify password", "err", err)
	}
	return ok && !dummy
}

// Refresh exchanges a refresh token for new tokens; the old one is spent.
// Presenting a spent one revokes every token of that sign-in.
func (s *Server) Refresh(refresh, remote string) (*Tokens, error) {
	now := s.now()
	sum := sha256.Sum256([]byte(refresh))
	r, err := s.st.UseRefresh(hex.EncodeToString(sum[:]), now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, ErrRefreshInvalid
	case errors.Is(err, store.ErrReplayed):
		// Someone holds a copy: cut the user's current access tokens too.
		if _, err := s.st.UpdateUser(r.User, func(u *store.User) error {
			if now.After(u.NotBefore) {
				u.NotBefore = now
			}
			return nil
		}); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		s.Audit(store.AuditEvent{Actor: r.User, Action: "refresh", Detail: "refresh token replayed: sign-in revoked", Remote: remote})
		s.log.Warn("refresh token replayed; its sign-in is revoked", "user", r.User, "remote", remote)
		return nil, ErrRefreshReplay
	case err != nil:
		return nil, err
	}
	if now.After(r.Expires) {
		return nil, ErrRefreshInvalid
	}
	u, err := s.st.User(r.User)
	if err != nil {
		return nil, ErrRefreshInvalid
	}
	if u.Disabled {
		return nil, ErrDisabled
	}
	if r.Created.Before(u.NotBefore) {
		return nil, ErrRevoked
	}
	return s.issue(u, r.Family)
}

// Logout ends the sign-in a refresh token belongs to: none of its refresh
// tokens refreshes again. Its last access token lapses within its short
// life. An unknown token is ErrRefreshInvalid.
func (s *Server) Logout(refresh, remote string) error {
	sum := sha256.Sum256([]byte(refresh))
	user, err := s.st.EndRefreshFamily(hex.EncodeToString(sum[:]))
	if errors.Is(err, store.ErrNotFound) {
		return ErrRefreshInvalid
	}
	if err != nil {
		return err
	}
	s.Audit(store.AuditEvent{Actor: user, Action: "logout", Allowed: true, Detail: "signed out: the sign-in's refresh tokens are void", Remote: remote})
	return nil
}

func (s *Server) issue(u *store.User, family string) (*Tokens, error) {
	now := s.now()
	groups, err := s.st.GroupsOf(u.Name)
	if err != nil {
		return nil, err
	}
	at := &wire.AccessToken{Issuer: s.cfg.Issuer, User: u.Name, Groups: groups, IssuedUnixMs: now.UnixMilli(),
		ExpiresUnixMs: now.Add(s.cfg.AccessTTL).UnixMilli(), TokenId: randomID(8), ForceServerSecurity: u.ForceServerSecurity}
	access, err := wire.SignToken(s.key, at)
	if err != nil {
		return nil, err
	}
	refresh := "otr_" + randomID(32)
	sum := sha256.Sum256([]byte(refresh))
	if err := s.st.PutRefresh(store.RefreshToken{Hash: hex.EncodeToString(sum[:]), User: u.Name, Family: family,
		Expires: now.Add(s.cfg.RefreshTTL), Created: now}); err != nil {
		return nil, err
	}
	s.pruneRefresh(now)
	return &Tokens{AccessToken: access, RefreshToken: refresh, Expires: time.UnixMilli(at.ExpiresUnixMs).UTC(),
		User: u.Name, Role: u.Role, Groups: groups, KeyID: s.kid}, nil
}

// pruneRefresh deletes expired refresh tokens, once per pruneEvery: a
// refresh every 10 minutes of every user's working day would otherwise
// stay stored for good, and logouts, replay checks and password changes
// read them all.
func (s *Server) pruneRefresh(now time.Time) {
	s.pruneMu.Lock()
	defer s.pruneMu.Unlock()
	if now.Sub(s.pruned) < pruneEvery {
		return
	}
	s.pruned = now
	if err := s.st.PruneRefresh(now); err != nil {
		s.log.Warn("delete expired refresh tokens", "err", err)
	}
}

// Principal is who a verified token speaks for.
type Principal struct {
	User   string
	Role   string
	Groups []string
	Token  *wire.AccessToken // nil for the bootstrap admin token
}

// Verify checks an access token's signature, expiry and issuer, and that
// its user is still enabled and the token not revoked.
func (s *Server) Verify(token string) (*Principal, error) {
	keys := map[string]ed25519.PublicKey{s.kid: s.key.Public().(ed25519.PublicKey)}
	at, err := wire.VerifyToken(token, keys, s.now())
	if err != nil {
		return nil, err
	}
	if at.GetIssuer() != s.cfg.Issuer {
		return nil, wire.ErrTokenUnknownKey
	}
	if at.GetAudience() != "" {
		// A session token, which a host was shown: good on that host only.
		return nil, fmt.Errorf("%w: a session token for host %s; the coordinator takes only access tokens", wire.ErrTokenAudience, at.GetAudience())
	}
	u, err := s.st.User(at.GetUser())
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrRevoked
	}
	if err != nil {
		return nil, err
	}
	if u.Disabled {
		return nil, ErrDisabled
	}
	if at.GetIssuedUnixMs() < u.NotBefore.UnixMilli() {
		return nil, ErrRevoked
	}
	return &Principal{User: u.Name, Role: u.Role, Groups: at.GetGroups(), Token: at}, nil
}

// PrincipalOf returns the current principal of a user (the bootstrap
// token's), refusing a disabled one.
func (s *Server) PrincipalOf(name string) (*Principal, error) {
	u, err := s.st.User(name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrRevoked
	}
	if err != nil {
		return nil, err
	}
	if u.Disabled {
		return nil, ErrDisabled
	}
	groups, err := s.st.GroupsOf(name)
	if err != nil {
		return nil, err
	}
	return &Principal{User: u.Name, Role: u.Role, Groups: groups}, nil
}

// Revocations is the list hosts enforce: every user with a not-before
// time, and every disabled user.
func (s *Server) Revocations() (*wire.RevocationList, error) {
	users, err := s.st.Users()
	if err != nil {
		return nil, err
	}
	out := &wire.RevocationList{IssuedUnixMs: s.now().UnixMilli()}
	for _, u := range users {
		if u.Disabled || !u.NotBefore.IsZero() {
			out.Revocations = append(out.Revocations, &wire.Revocation{User: u.Name, NotBeforeUnixMs: u.NotBefore.UnixMilli(), Disabled: u.Disabled})
		}
	}
	return out, nil
}

// SignedRevocations is the current list signed with the token key, so that
// hosts can pass it on to their office peers. Its issue time changes only
// when the list does: hosts take and pass on a list newer than theirs, and
// a list issued anew for every check-in answer sent each office through a
// round of signature checks and peer messages for nothing.
func (s *Server) SignedRevocations() (*wire.SignedRevocations, error) {
	l, err := s.Revocations()
	if err != nil {
		return nil, err
	}
	s.revMu.Lock()
	defer s.revMu.Unlock()
	if s.revList != nil {
		if slices.EqualFunc(l.GetRevocations(), s.revList.GetRevocations(), func(a, b *wire.Revocation) bool { return proto.Equal(a, b) }) {
			return s.revSigned, nil
		}
		// Later than the last, even if the clock went back.
		l.IssuedUnixMs = max(l.GetIssuedUnixMs(), s.revList.GetIssuedUnixMs()+1)
	}
	sr, err := wire.SignRevocations(s.key, l)
	if err != nil {
		return nil, err
	}
	s.revList, s.revSigned = l, sr
	return sr, nil
}

// Revoke refuses the user's tokens issued until now.
func (s *Server) Revoke(name string) error {
	now := s.now()
	_, err := s.st.UpdateUser(name, func(u *store.User) error {
		if now.After(u.NotBefore) {
			u.NotBefore = now
		}
		return nil
	})
	return err
}

func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// limiter is a fixed-window counter per key.
type limiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	seen   map[string]*window
}

type window struct {
	start time.Time
	n     int
}

func newLimiter(max int, w time.Duration) *limiter {
	if max <= 0 {
		max = 10
	}
	return &limiter{max: max, window: w, seen: map[string]*window{}}
}

// exceeded says whether key is over the limit now, without counting.
func (l *limiter) exceeded(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.seen[key]
	return ok && now.Sub(w.start) < l.window && w.n >= l.max
}

// count counts an attempt for key and returns the start of the window it
// was counted in, for uncount.
func (l *limiter) count(key string, now time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seen) > 100000 {
		// Old windows only matter for a minute; drop them all rather than
		// grow without bound under a spray of names.
		for k, w := range l.seen {
			if now.Sub(w.start) >= l.window {
				delete(l.seen, k)
			}
		}
	}
	w, ok := l.seen[key]
	if !ok || now.Sub(w.start) >= l.window {
		l.seen[key] = &window{start: now, n: 1}
		return now
	}
	w.n++
	return w.start
}

// uncount takes back an attempt counted in the window starting at start,
// if that window is still the key's.
func (l *limiter) uncount(key string, start time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w, ok := l.seen[key]; ok && w.start.Equal(start) && w.n > 0 {
		w.n--
	}
}

// nameLocks holds a mutex per name while anyone uses it.
type nameLocks struct {
	mu sync.Mutex
	m  map[string]*nameLock
}

type nameLock struct {
	mu   sync.Mutex
	refs int
}

// lock waits for name's lock and returns its unlock.
func (n *nameLocks) lock(name string) (unlock func()) {
	n.mu.Lock()
	if n.m == nil {
		n.m = map[string]*nameLock{}
	}
	l := n.m[name]
	if l == nil {
		l = &nameLock{}
		n.m[name] = l
	}
	l.refs++
	n.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		n.mu.Lock()
		defer n.mu.Unlock()
		if l.refs--; l.refs == 0 {
			delete(n.m, name)
		}
	}
}
