// Package agent is the Outpost agent: it enrols, keeps its link to the
// coordinator, checks in, joins its office's gossip, takes signed policy,
// fetches and verifies content and hands items to the plugins. It keeps
// working on its last accepted policy when the coordinator is away.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/singleflight"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/agent/internal/fetch"
	"github.com/outposthq/outpost/agent/internal/peercache"
	"github.com/outposthq/outpost/agent/internal/runner"
	"github.com/outposthq/outpost/agent/internal/session"
	"github.com/outposthq/outpost/agent/internal/state"
	"github.com/outposthq/outpost/pkg/config"
	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/gossip"
	"github.com/outposthq/outpost/pkg/member"
	"github.com/outposthq/outpost/pkg/wire"
)

// Version is set at build time.
var Version = "dev"

// Config is the agent's configuration.
type Config struct {
	Coordinator   string `yaml:"coordinator"`    // host[:port] of the coordinator's QUIC endpoint
	EnrollToken   string `yaml:"enroll_token"`   // used once, at first start
	CAFingerprint string `yaml:"ca_fingerprint"` // sha256:... of the coordinator's CA
	DataDir       string `yaml:"data_dir"`
	Root          string `yaml:"root"`        // where plugins act; / on a real host
	PluginsDir    string `yaml:"plugins_dir"` // where outpost-plugin-<kind> binaries are
	Hostname      string `yaml:"hostname"`    // default: the OS's
	GossipBind    string `yaml:"gossip_bind"`
	// GossipAdvertise is the host:port other members reach; default the bind address.
	GossipAdvertise string        `yaml:"gossip_advertise"`
	MetricsAddr     string        `yaml:"metrics_addr"` // empty: no metrics listener
	PluginTimeout   time.Duration `yaml:"plugin_timeout"`
	// HangLimit is how long the agent may make no progress before it
	// stops, to be started again by its service manager, keeping every
	// goroutine's stack in <data_dir>/hang.txt (watchdog.go); 0 (the
	// default) is plugin_timeout and ten minutes more.
	HangLimit time.Duration `yaml:"hang_limit"`
	LogLevel  string        `yaml:"log_level"`
	LogFormat string        `yaml:"log_format"`
	// Fast uses short timers (tests and the demo): quick reconnects and
	// loopback gossip timings.
	Fast bool `yaml:"fast"`
	// GossipProbeInterval is how often this agent probes a member of its
	// office; 0 (the default) is 800 ms, which finds a dead member of an
	// office of 200 within 10 s. Longer costs less and finds it later;
	// the load generator uses it to fit thousands of agents on a machine.
	GossipProbeInterval time.Duration `yaml:"gossip_probe_interval"`

	// SessionListen is a host:port where technicians may reach this host
	// directly (QUIC, ALPN outpost-technician/1); empty (the default): only
	// sessions brokered by the coordinator, no inbound port.
	SessionListen string `yaml:"session_listen"`
	// BreakGlassHash is the Argon2id hash (outpost hash-password) of a
	// host-local password for when the coordinator is gone; empty: off.
	BreakGlassHash string `yaml:"break_glass_hash"`

	// PeerListen is where office peers fetch chunks from this agent
	// (HTTPS, mutual TLS); empty: the gossip address's host on a free
	// port, which is announced; "off": serve no peers.
	PeerListen string `yaml:"peer_listen"`
	// PeerBudget bounds what this agent sends to office peers.
	PeerBudget peercache.Budget `yaml:"peer_upload"`
}

// DefaultConfig is the configuration without a file.
func DefaultConfig() Config {
	return Config{
		DataDir:       "/var/lib/outpost-agent",
		Root:          "/",
		PluginsDir:    "/usr/lib/outpost/plugins",
		GossipBind:    "0.0.0.0:7946",
		PluginTimeout: 30 * time.Minute,
		LogLevel:      "info",
		LogFormat:     "text",
		PeerBudget:    peercache.DefaultBudget(),
	}
}

// LoadConfig applies defaults, the YAML file (if any), then OUTPOST_AGENT_* variables.
func LoadConfig(path string, env func(string) string) (Config, error) {
	cfg := DefaultConfig()
	err := config.Load(path, &cfg, "OUTPOST_AGENT", env)
	return cfg, err
}

// Validate says what is wrong with a configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Coordinator == "" {
		errs = append(errs, errors.New("coordinator is required (host or host:port of the coordinator's QUIC endpoint)"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is required"))
	}
	if c.Root == "" || !filepath.IsAbs(c.Root) {
		errs = append(errs, fmt.Errorf("root %q: want an absolute directory", c.Root))
	}
	if c.PluginsDir == "" {
		errs = append(errs, errors.New("plugins_dir is required"))
	}
	if _, _, err := net.SplitHostPort(c.GossipBind); err != nil {
		errs = append(errs, fmt.Errorf("gossip_bind %q: want host:port", c.GossipBind))
	}
	if err := c.PeerBudget.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.PeerListen != "" && c.PeerListen != "off" {
		if _, _, err := net.SplitHostPort(c.PeerListen); err != nil {
			errs = append(errs, fmt.Errorf("peer_listen %q: want host:port, or off", c.PeerListen))
		}
	}
	if c.GossipProbeInterval != 0 && (c.GossipProbeInterval < 100*time.Millisecond || c.GossipProbeInterval > time.Minute) {
		errs = append(errs, fmt.Errorf("gossip_probe_interval %v: want 100ms to 1m, or 0 for the default (800ms)", c.GossipProbeInterval))
	}
	if c.PluginTimeout < time.Second {
		errs = append(errs, fmt.Errorf("plugin_timeout %v: want at least 1s", c.PluginTimeout))
	}
	if least := c.PluginTimeout + c.minHangMargin(); c.HangLimit < 0 || c.HangLimit > 0 && c.HangLimit <= least {
		errs = append(errs, fmt.Errorf("hang_limit %v: want more than plugin_timeout (%v, which one plugin call may take) and %v (the agent's own waits for its coordinator, relays and peers), or 0 for plugin_timeout and %v more",
			c.HangLimit, c.PluginTimeout, c.minHangMargin(), hangMargin))
	}
	return errors.Join(errs...)
}

// Agent is a configured agent.
type Agent struct {
	cfg  Config
	log  *slog.Logger
	reg  *prometheus.Registry
	kick chan struct{}
	// syncs are technicians' requests to run the policy now; the loop
	// answers each with the report of the run it made for it.
	syncs chan chan *wire.Report
	// power runs the shutdown command (hostactions.go).
	power func(ctx context.Context, argv ...string) error
	// bootIDFunc, if set, names the host's boot (reboot.go).
	bootIDFunc func() string
	// sessionAddr is the direct session listener's address, once up.
	sessionAddr atomic.Value // string
	// revocationsAsk shares one request for the revocation list among
	// direct sessions opened together; revocationsAsked is when the last
	// answered (refreshRevocations).
	revocationsAsk   singleflight.Group
	revocationsAsked atomic.Pointer[time.Time]

	addresses func() []string
	// gossipAllow, if set, cuts office gossip off from some hosts (tests).
	gossipAllow func(host string) bool

	mu     sync.Mutex
	info   *wire.OfficeInfo
	office string // where the agent is now; its policy applies
	peers  *peerPolicy
	// rollup carries the office's check-ins through one member (rollup.go).
	rollup *rollup
	// checkinMu keeps one check-in at a time: the loop's and the roll-up's.
	checkinMu sync.Mutex
	// noticed is the newest revision a push announced.
	noticed atomic.Uint64
	// heard is the newest revision a check-in told of and when it was
	// first heard: its office is given officeGrace to hand it over.
	heard   uint64
	heardAt time.Time
	// rejoining is set while a rejoin of the office's gossip is under way.
	rejoining atomic.Bool
	// merging is set while seeds this member had not heard of are joined.
	merging atomic.Bool
	// keptPeers are the peer addresses last written for the next start.
	keptPeers atomic.Value // []string
	// peerReports are office peers' misdeeds, told at the next check-in;
	// peerReported is when each peer's each misdeed was last reported.
	peerReports  []string
	peerReported map[string]time.Time
	// told is what the last report of the loop's carried (news).
	told     told
	id       *member.Identity
	state    *state.State
	link     *member.Client
	gossip   *officeGossip
	ready    chan struct{}
	checkins *prometheus.CounterVec
	revision prometheus.Gauge

	// sessions serves technicians (access.go).
	sessions *session.Server

	fetcher     *fetch.Fetcher
	officePeers *officePeers // nil when serving no peers

	// upgrade watches the agent's executable (upgrade.go); nil unless
	// WithExecutable. trial is the trial of this version after an upgrade
	// (upgrade_trial.go); nil when none.
	upgrade *selfUpgrade
	trial   *Trial
	// lastCheckinOK is when a check-in last succeeded (time.Time).
	lastCheckinOK atomic.Value
	// upgradeChecks counts new executables checked, by result.
	upgradeChecks *prometheus.CounterVec
	// watch restarts an agent that makes no progress (watchdog.go).
	watch    *watchdog
	lastHang prometheus.Gauge
	// hangNotice is what check-ins say of the last hang, at hangAt, for
	// a week after it (toldHang); "" when none.
	hangNotice string
	hangAt     time.Time
}

// Option changes how New builds an agent.
type Option func(*Agent)

// WithAddresses replaces the host's interface addresses that the agent
// reports at check-in (and by which the coordinator places it in an
// office); for tests that move an agent between offices.
func WithAddresses(f func() []string) Option { return func(a *Agent) { a.addresses = f } }

// New checks cfg; Run starts the agent.
func New(cfg Config, logger *slog.Logger, reg *prometheus.Registry, opts ...Option) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("hostname: %w (set hostname in the config)", err)
		}
		cfg.Hostname = h
	}
	a := &Agent{cfg: cfg, log: logger.With("component", "agent"), reg: reg, kick: make(chan struct{}, 1), ready: make(chan struct{}),
		syncs: make(chan chan *wire.Report),
		checkins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_agent_checkins_total", Help: "Check-ins by result."}, []string{"result"}),
		revision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outpost_agent_policy_revision", Help: "Highest accepted policy revision."}),
		lastHang: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outpost_agent_last_hang_timestamp_seconds",
			Help: "When the agent last restarted itself because it made no progress (Unix seconds; 0: not since its data directory was made)."}),
		upgradeChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_agent_upgrade_checks_total",
			Help: "New agent executables found in place of the running one, by the result of their checks (passed, refused)."}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{a.checkins, a.revision, a.upgradeChecks, a.lastHang} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	a.addresses = localAddresses
	for _, o := range opts {
		o(a)
	}
	if a.power == nil {
		a.power = a.runPower
	}
	return a, nil
}

// Ready is closed once the agent is enrolled and running.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// ID is the member id, once Ready.
func (a *Agent) ID() string { return a.id.ID }

// Revision is the highest accepted revision, once Ready.
func (a *Agent) Revision() uint64 { return a.state.Revision() }

// GossipPeers lists the office members this agent sees.
func (a *Agent) GossipPeers() []gossip.Peer { return a.gossip.peers() }

// Office is the office the agent is in now, and whether it is roaming.
func (a *Agent) Office() (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.office, a.info.GetRoaming()
}

// Run works until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	a.removeWriteLeftovers()
	id, err := a.enrol(ctx)
	if err != nil {
		return err
	}
	a.id = id
	st, err := state.Open(filepath.Join(a.cfg.DataDir, "state"), id.PolicyKey)
	if err != nil {
		return err
	}
	for _, what := range st.SetAside() {
		a.log.Error("agent state: a damaged file was set aside; the policy is taken again from the coordinator or the office", "what", what)
	}
	a.state = st
	a.office = id.Office
	if p := st.Policy(); p != nil {
		a.office = p.GetOffice() // where it was last, until the coordinator says
	}
	if info := a.loadOffice(); info != nil {
		a.info, a.office = info, info.GetName() // what the coordinator said last
	}
	a.revision.Set(float64(st.Revision()))

	link, err := member.NewClient(id, a.cfg.Coordinator, a.onPush, a.log)
	if err != nil {
		return err
	}
	if a.cfg.Fast {
		link.SetBackoff(100*time.Millisecond, 2*time.Second)
	}
	a.link = link
	if err := a.startSessions(); err != nil {
		return err
	}
	peers, err := newPeerPolicy(a, a.reg)
	if err != nil {
		return err
	}
	a.peers = peers
	if a.rollup, err = newRollup(a, a.reg); err != nil {
		return err
	}
	a.gossip = &officeGossip{base: gossip.Config{Name: id.ID, Bind: a.cfg.GossipBind, Advertise: a.cfg.GossipAdvertise,
		PassKey: id.PolicyKey, Signer: id.GossipSigner,
		LAN: !a.cfg.Fast, ProbeInterval: a.cfg.GossipProbeInterval, Handler: peers, Allow: a.gossipAllow},
		pass: id.Pass(), log: a.log.With("component", "gossip")}

	idle := 30 * time.Second
	if a.cfg.Fast {
		idle = 3 * time.Second
	}
	fetcher, err := fetch.New(filepath.Join(a.cfg.DataDir, "content"), presigner{link}, contentClient(id, idle), a.log, a.reg)
	if err != nil {
		return err
	}
	if a.cfg.Fast {
		// Settle stays at its default: members must hear of each other's
		// downloads before they take shares of the relay's work, and
		// under the race detector on a busy machine gossip takes most of
		// a second to carry that.
		fetcher.SetTuning(fetch.Tuning{Refresh: 250 * time.Millisecond, StallAfter: 5 * time.Second})
	}
	a.fetcher = fetcher
	runCfg := runner.Config{PluginsDir: a.cfg.PluginsDir, Root: a.cfg.Root, CallTimeout: a.cfg.PluginTimeout, Location: a.officeLocation}
	a.rebootHooks(&runCfg)
	run, err := runner.New(runCfg, content{a, fetcher}, a.log, a.reg)
	if err != nil {
		return err
	}
	// stuck is set when the loop hangs: what hangs is left behind, so
	// nothing waits for it.
	stuck := false
	defer func() {
		if !stuck {
			run.Close()
		}
	}()
	a.watch = newWatchdog(a.cfg.hangLimit(), func() uint64 { return run.Progress() + fetcher.Progress() })
	if at, what, ok := lastHang(a.cfg.DataDir); ok {
		a.lastHang.Set(float64(at.Unix()))
		a.hangAt, a.hangNotice = at, hangNotice(a.cfg.DataDir, at, what)
		if a.toldHang(time.Now()) != "" {
			a.log.Info("this agent restarted itself after a hang; check-ins tell of it for a week", "at", at, "stuck", what, "stacks", filepath.Join(a.cfg.DataDir, hangFile))
		}
	}
	run.Remember(st.Policy(), st.Report())

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var ps parts
	errc := make(chan error, 1)
	start := func(name string, f func(context.Context) error) { ps.start(ctx, name, f, errc, cancel) }
	start("coordinator link", link.Run)
	start("technician sessions", a.runSessions)
	every := 5 * time.Second
	if a.cfg.Fast {
		every = time.Second
	}
	start("office policy", func(ctx context.Context) error { return peers.run(ctx, every) })
	start("office roll-up", func(ctx context.Context) error { return a.rollup.run(ctx, every/5, 2*every/5) })
	if a.cfg.MetricsAddr != "" {
		start("metrics", a.serveMetrics)
	}
	if a.trial != nil {
		stable := trialStable
		if a.cfg.Fast {
			stable = trialStableFast
		}
		started := time.Now()
		start("upgrade trial", func(ctx context.Context) error { return a.watchTrial(ctx, started, stable) })
	}
	if a.upgrade != nil {
		period := upgradeCheckEvery
		if a.cfg.Fast {
			period = 500 * time.Millisecond
		}
		start("upgrade watch", func(ctx context.Context) error { return a.watchExecutable(ctx, period, a.upgradeChecks) })
	}
	serveChunks, err := a.startPeerCache(fetcher)
	if err != nil {
		cancel()
		ps.wg.Wait()
		return err
	}
	if serveChunks != nil {
		start("peer content", serveChunks)
	}
	// The office as the coordinator said last (or the one it enrolled
	// in), until the first check-in says otherwise.
	a.gossip.parent = ctx
	if err := a.gossip.set(a.gossipKeys(a.info)); errors.Is(err, gossip.ErrNoAddress) {
		// Started with no network (a laptop booted offline): the last
		// policy runs all the same, and the office's gossip starts once
		// there is an address (the office loop, officeGossip.follow).
		a.log.Warn("office gossip waits for a network address", "err", err)
	} else if err != nil {
		cancel()
		ps.wg.Wait()
		return fmt.Errorf("gossip: %w", err)
	}
	defer func() {
		if !stuck {
			a.gossip.stop()
		}
	}()
	// Rejoin the peers known before a restart: an office cut off from the
	// coordinator still finds itself.
	if seeds := a.loadPeers(); len(seeds) > 0 {
		if _, err := a.gossip.join(seeds); err != nil {
			a.log.Debug("rejoin known office peers", "err", err)
		}
	}
	close(a.ready)
	a.log.Info("agent running", "member", id.ID, "office", id.Office, "revision", st.Revision(), "root", a.cfg.Root)
	looped := make(chan bool, 1)
	go func() { looped <- a.loop(ctx, run) }()
	hung := make(chan string, 1)
	tick := min(max(a.watch.limit/20, 100*time.Millisecond), 30*time.Second)
	start("hang watchdog", func(ctx context.Context) error {
		if what, ok := a.watch.run(ctx, tick); ok {
			hung <- what
		}
		return nil
	})
	var restart bool
	select {
	case restart = <-looped:
	case what := <-hung:
		stuck = true
		return a.stopHung(what, cancel, &ps.wg, run)
	case <-ctx.Done():
		// A stop asked for, or a part of the agent that failed (its
		// error is returned): the loop ends its turn at once (what it
		// waits for is cancelled). One that does not has hung.
		wait := a.stopWait()
		select {
		case restart = <-looped:
		case <-time.After(wait):
			stuck = true
			return a.stopHung(fmt.Sprintf("its loop did not stop within %s of being asked to", wait), cancel, &ps.wg, run)
		}
	}
	cancel()
	// The parts end at once too; one that does not has hung, and would
	// keep a stopping agent, or one restarting into an upgrade, alive
	// doing nothing.
	if left := ps.wait(a.stopWait()); len(left) > 0 {
		stuck = true
		return a.stopHung(fmt.Sprintf("%s did not stop within %s of being asked to", strings.Join(left, ", "), a.stopWait()), cancel, &ps.wg, run)
	}
	select {
	case err := <-errc:
		return err
	default:
	}
	// A stop asked for meanwhile wins over the restart.
	if restart && parent.Err() == nil {
		return ErrRestart
	}
	return nil
}

// stopWait is how long a stop asked for waits for the loop to end its
// turn before the agent takes it for hung and stops without it (systemd
// would kill it after 90 s); stopWaitFast for Config.Fast.
const (
	stopWait     = 30 * time.Second
	stopWaitFast = 5 * time.Second
)

func (a *Agent) stopWait() time.Duration {
	if a.cfg.Fast {
		return stopWaitFast
	}
	return stopWait
}

// hangStopWait is how long an agent that hung waits for what still
// answers (gossip, plugins, listeners) to stop before it returns.
const hangStopWait = 5 * time.Second

// stopHung keeps what is stuck and every goroutine's stack, stops what
// still answers, and returns ErrHung without waiting for what hangs.
func (a *Agent) stopHung(what string, cancel context.CancelFunc, wg *sync.WaitGroup, run *runner.Runner) error {
	path, err := keepHang(a.cfg.DataDir, what, time.Now())
	if err != nil {
		a.log.Error("keep the goroutine stacks of the hang", "err", err)
	}
	a.log.Error("the agent made no progress: it stops, to be started again by its service manager", "stuck", what, "limit", a.watch.limit, "stacks", path)
	cancel()
	// The plugins are stopped at once, beside the rest: they are
	// processes of their own, which would outlive an agent that leaves
	// its parts, and one of them may be what the loop waits for.
	var parts sync.WaitGroup
	parts.Go(run.Close)
	parts.Go(func() {
		wg.Wait()
		a.gossip.stop()
	})
	done := make(chan struct{})
	go func() {
		parts.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(hangStopWait):
		a.log.Warn("parts of the agent did not stop; leaving them", "waited", hangStopWait)
	}
	return fmt.Errorf("%w: %s", ErrHung, what)
}

// enrol loads the identity, enrolling when there is none. A refused token
// is final; an unreachable coordinator is retried.
func (a *Agent) enrol(ctx context.Context) (*member.Identity, error) {
	backoff := time.Second
	if a.cfg.Fast {
		backoff = 100 * time.Millisecond
	}
	return member.LoadOrEnrollRetrying(ctx, member.EnrolRequest{
		Dir: filepath.Join(a.cfg.DataDir, "identity"), Coordinator: a.cfg.Coordinator,
		Fingerprint: a.cfg.CAFingerprint, Token: a.cfg.EnrollToken, Hostname: a.cfg.Hostname,
		Role: wire.Role_ROLE_AGENT, FirstBackoff: backoff,
	}, a.log)
}

// notice records that revision rev is out, to be taken from the
// coordinator at the next turn of the loop.
func (a *Agent) notice(rev uint64) {
	for {
		old := a.noticed.Load()
		if rev <= old || a.noticed.CompareAndSwap(old, rev) {
			return
		}
	}
}

func (a *Agent) onPush(ctx context.Context, req *wire.Request) *wire.Response {
	if resp, ok := a.onAccessPush(ctx, req); ok {
		return resp
	}
	if n := req.GetRevisionNotice(); n != nil {
		if a.holds(n) {
			// The office handed it over before the push came (the push goes
			// to a few members at once, gossip is as quick): the report
			// that says so is made or on its way; a second check-in for it
			// would be one more message per pushed member and rollout.
			a.log.Debug("revision pushed, already held", "revision", n.GetRevision())
			return nil
		}
		a.log.Debug("revision pushed", "revision", n.GetRevision())
		// The coordinator pushes to ask for a check-in now (a new revision,
		// a move): that one is direct, not through the roll-up.
		a.rollup.checkinDirectly()
		if sp := n.GetPolicy(); sp != nil {
			// Verified exactly as one asked for; if it does not do, the
			// loop asks the coordinator for it below.
			if err := a.acceptFromCoordinator(sp); err != nil {
				a.log.Warn("pushed policy", "err", err)
			}
		}
		// Taken before the check-in: a push wants the policy at once.
		a.notice(n.GetRevision())
		a.trigger()
		return nil
	}
	return wire.Errorf(wire.Error_CODE_BAD_REQUEST, "unknown push")
}

// holds tells whether a pushed revision notice is of a revision of this
// member's office that it has taken already. A notice without a revision
// (the member was moved) or of another office is always news.
func (a *Agent) holds(n *wire.RevisionNotice) bool {
	office, _ := a.Office()
	return n.GetRevision() > 0 && n.GetOffice() == office && a.state.RevisionIn(office) >= n.GetRevision()
}

func (a *Agent) trigger() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func (a *Agent) interval() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s := a.info.GetCheckinIntervalSeconds(); s > 0 {
		return time.Duration(s) * time.Second
	}
	return 2 * time.Minute
}

// loop checks in at the office's interval, or at once when pushed, and
// re-applies the accepted policy each time so drift is repaired even when
// the coordinator is away.
// loop returns true when the agent is to restart into a new executable.
func (a *Agent) loop(ctx context.Context, run *runner.Runner) (restart bool) {
	// Apply what was accepted before a restart without waiting for the
	// coordinator.
	if p := a.state.Policy(); p != nil {
		a.watch.busy(fmt.Sprintf("running the policy (revision %d) at start", p.GetRevision()))
		a.apply(ctx, run, p)
	}
	// The first check-in waits for the link, briefly; later ones do not
	// wait for a link that is down, so enforcement goes on at the interval.
	wait := 10 * time.Second
	urgent := true // the first report, and any the agent is woken for, are news
	kicked := false
	// asked are technicians' requests to run the policy now, answered
	// after the next pass.
	var asked []chan *wire.Report
	// notified tells of a new executable that passed its checks; the
	// restart into it waits for the pass under way and for open technician
	// sessions, looked at again every sessionRecheck meanwhile.
	var notified chan struct{}
	if a.upgrade != nil {
		notified = a.upgrade.notify
	}
	var heldSince time.Time
	var hold *time.Ticker
	var holdTick <-chan time.Time
	defer func() {
		if hold != nil {
			hold.Stop()
		}
	}()
	// due is when the next periodic pass is: a wake-up that makes no pass
	// (a straggler kick, a look at a held restart) does not put it off.
	due := time.Now()
	for ctx.Err() == nil {
		a.mu.Lock()
		office := a.office
		a.mu.Unlock()
		if a.noticed.Load() > a.state.RevisionIn(office) {
			a.watch.busy(fmt.Sprintf("taking pushed revision %d", a.noticed.Load()))
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := a.syncTo(sctx, a.noticed.Load()); err != nil {
				a.log.Debug("take pushed revision", "err", err)
			}
			cancel()
		}
		// A policy taken since the last run (pushed, or handed over by a
		// peer) runs before the check-in: one report then says both that
		// the revision is held and how its run went, where it took two in
		// a row — for an office's rollout, that many messages, signatures
		// and acks fewer. A run that takes longer than a moment does not
		// hold the news back (applyFirst).
		ranFirst := false
		if p := a.state.Policy(); p != nil && !a.ran(p) {
			a.watch.busy(fmt.Sprintf("running the policy (revision %d)", p.GetRevision()))
			a.applyFirst(ctx, run, p)
			ranFirst, urgent = true, true
		}
		if kicked && !ranFirst && !a.news() && len(asked) == 0 {
			// The straggler of a burst of kicks (a push whose policy was
			// taken and reported in the pass before): nothing to tell, and
			// a run and a report now would be one more of each per member
			// and rollout.
			a.log.Debug("woken with nothing new to report")
		} else {
			a.pass(ctx, run, urgent, wait, ranFirst)
			due = time.Now().Add(a.interval())
		}
		if len(asked) > 0 {
			// A run a technician asked for is told at once, changed or
			// not: it is what they will look for next.
			a.watch.busy("reporting the run a technician asked for")
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := a.report(cctx, true, false); err != nil {
				a.log.Debug("report the run a technician asked for", "err", err)
			}
			cancel()
			for _, done := range asked {
				done <- a.state.Report()
			}
		}
		wait, kicked, asked = 0, false, nil
		upgrade := false
		a.watch.wait(due)
		select {
		case <-ctx.Done():
		case done := <-a.syncs:
			urgent, asked = true, append(asked, done)
			// Requests made meanwhile share the pass: a technician
			// cannot keep the host running its policy back to back.
			for more := true; more; {
				select {
				case done := <-a.syncs:
					asked = append(asked, done)
				default:
					more = false
				}
			}
		case <-a.kick:
			urgent, kicked = true, true
			// Kicks come in bursts (a push that carries a policy: the
			// policy taken, then the notice): one pass answers them all.
			select {
			case <-ctx.Done():
			case <-time.After(kickSettle):
			}
			select {
			case <-a.kick:
			default:
			}
		case <-time.After(time.Until(due)):
			urgent = false
		case <-notified:
			upgrade, kicked = true, true
		case <-holdTick:
			upgrade, kicked = true, true
		}
		a.watch.busy("starting its next turn")
		if !upgrade || ctx.Err() != nil {
			continue
		}
		a.watch.busy("restarting into a new version")
		version, ok := a.upgrade.Ready()
		if !ok {
			// Replaced again, or the running file put back: the watch
			// tells again if something passes.
			if hold != nil {
				hold.Stop()
			}
			heldSince, hold, holdTick = time.Time{}, nil, nil
			continue
		}
		sessions := a.sessions.Live()
		onTrial := a.trial.Active()
		if onTrial || sessions > 0 && (heldSince.IsZero() || time.Since(heldSince) < sessionWaitMax) {
			if heldSince.IsZero() {
				heldSince = time.Now()
				every := sessionRecheck
				if a.cfg.Fast {
					every = time.Second
				}
				hold = time.NewTicker(every)
				holdTick = hold.C
				if onTrial {
					a.log.Info("the restart into the new agent executable waits for this version's own upgrade to be kept", "to", version)
				} else {
					a.log.Info("the restart into the new agent executable waits for technician sessions to end", "open", sessions, "to", version, "at_most", sessionWaitMax)
				}
			}
			continue
		}
		if err := a.upgrade.prepare(a.cfg.DataDir); err != nil {
			a.log.Error("new agent executable not restarted into: no copy of this version to roll back to", "err", err)
			continue
		}
		a.log.Info("restarting into the new agent executable", "from", Version, "to", version)
		return true
	}
	return false
}

// pass reports, takes a newer policy the answer tells of, and runs the
// policy (unless ranFirst: it was run just now), reporting again if the
// run changed anything. wait is how long a first check-in waits for the
// link.
func (a *Agent) pass(ctx context.Context, run *runner.Runner, urgent bool, wait time.Duration, ranFirst bool) {
	a.watch.busy("checking in")
	cctx, cancel := context.WithTimeout(ctx, max(wait, 10*time.Second))
	err := a.report(cctx, urgent, wait > 0)
	cancel()
	if err != nil {
		a.checkins.WithLabelValues("error").Inc()
		a.log.Warn("check-in failed; working on the last accepted policy", "revision", a.state.Revision(), "err", err)
	} else {
		a.checkins.WithLabelValues("ok").Inc()
		a.lastCheckinOK.Store(time.Now())
		a.watch.busy("taking the newest policy")
		sctx, cancel := context.WithTimeout(ctx, coordinatorWait)
		err := a.sync(sctx)
		cancel()
		if err != nil {
			a.log.Warn("policy update failed", "err", err)
		}
	}
	if p := a.state.Policy(); p != nil && (!ranFirst || !a.ran(p)) {
		a.watch.busy(fmt.Sprintf("running the policy (revision %d)", p.GetRevision()))
		if a.apply(ctx, run, p) {
			// Report right after applying rather than at the next interval.
			a.watch.busy("reporting the run")
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := a.report(cctx, true, false); err != nil {
				a.log.Debug("report after apply", "err", err)
			}
			cancel()
		}
	}
}

// news tells whether this member has anything to tell that its last
// report did not: another revision or run, a misbehaving peer, a direct
// check-in the coordinator asked for, or a revision it heard of and does
// not hold.
func (a *Agent) news() bool {
	a.mu.Lock()
	told, peers, office := a.told, len(a.peerReports) > 0, a.office
	a.mu.Unlock()
	return peers || a.rollup.directWanted() || a.noticed.Load() > a.state.RevisionIn(office) ||
		told.revision != a.state.Revision() || newRun(told.report, a.state.Report())
}

// newRun tells whether run now differs from the run last told in what a
// report says (a run again with the same outcome is not news: it waits in
// the queue for the next report, as after the interval's run).
func newRun(last, now *wire.Report) bool {
	if last == now {
		return false
	}
	return last == nil || now == nil || last.GetRevision() != now.GetRevision() || changed(last, now)
}

// ran tells whether the last run was of p's revision.
func (a *Agent) ran(p *wire.Policy) bool {
	r := a.state.Report()
	return r != nil && r.GetRevision() == p.GetRevision()
}

// kickSettle is how long the loop lets a burst of kicks settle.
const kickSettle = 50 * time.Millisecond

// quickRun is how long a run of a newly taken policy may take before the
// check-in that says the revision is held goes without waiting for it.
const quickRun = time.Second

// applyFirst runs p, a policy not run yet; if the run takes longer than
// quickRun, the member reports meanwhile that it holds the revision.
func (a *Agent) applyFirst(ctx context.Context, run *runner.Runner, p *wire.Policy) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.apply(ctx, run, p)
	}()
	select {
	case <-done:
		return
	case <-time.After(quickRun):
	}
	a.log.Debug("the run takes a while: telling the revision is held meanwhile", "revision", p.GetRevision())
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if err := a.report(cctx, true, false); err != nil {
		a.log.Debug("report a revision taken while it runs", "err", err)
	}
	cancel()
	<-done
}

// apply runs p and keeps the report; it reports whether anything about the
// report changed, which is worth telling the coordinator at once.
func (a *Agent) apply(ctx context.Context, run *runner.Runner, p *wire.Policy) bool {
	report := run.Run(ctx, p)
	if ctx.Err() != nil {
		return false
	}
	old := a.state.Report()
	a.carryReboot(report, old)
	// Kept until the coordinator has it, however long it is away; in
	// memory (and sent all the same) while the disk does not take it. A
	// write failing is told once, not at every run.
	dropped, err := a.state.Enqueue(report)
	if err != nil && !state.Repeated(err) {
		a.log.Error("queue report: kept in memory until the disk takes it", "err", err)
	}
	if kept := state.MaxQueued; dropped > 0 {
		if err != nil {
			kept = state.MaxPending
		}
		a.log.Warn("report queue full: oldest runs dropped", "dropped", dropped, "kept", kept)
	}
	if err := a.state.SetReport(report); err != nil && !state.Repeated(err) {
		a.log.Error("save report: reported all the same, written at the next save", "err", err)
	}
	// Content neither this policy nor the one before names goes, after a
	// grace period.
	if a.fetcher != nil {
		a.fetcher.Collect(fetch.Named(p, a.state.Policy(), a.state.Previous()), fetch.ContentGrace)
	}
	return old == nil || old.GetRevision() != report.GetRevision() || changed(old, report)
}

func changed(a, b *wire.Report) bool {
	if len(a.GetItems()) != len(b.GetItems()) || !slices.Equal(a.GetRebootItems(), b.GetRebootItems()) {
		return true
	}
	for i, x := range a.GetItems() {
		y := b.GetItems()[i]
		if x.GetId() != y.GetId() || x.GetStatus() != y.GetStatus() || x.GetMessage() != y.GetMessage() || y.GetChanged() {
			return true
		}
	}
	return false
}

// report tells the coordinator how this member is: through the office's
// roll-up member when there is one, else by a direct check-in, which
// waits for a link that is down only when waitLink is set. urgent asks the
// roll-up member to pass it on soon.
func (a *Agent) report(ctx context.Context, urgent, waitLink bool) error {
	// What this report tells, taken before it is made: if the state
	// changes meanwhile, the next kick reports again.
	t := told{revision: a.state.Revision(), report: a.state.Report()}
	// A misbehaving peer is news for the coordinator itself: straight
	// there while the link is up.
	a.mu.Lock()
	peerNews := len(a.peerReports) > 0
	a.mu.Unlock()
	to, why := a.rollup.route()
	if to != "" && peerNews && a.link.Connected() {
		to, why = "", "a misbehaving peer to report"
	}
	if to != "" {
		err := a.rollup.send(to, urgent)
		if err == nil {
			a.reported(t)
			a.flushAudit(ctx)
			return nil
		}
		a.log.Debug("hand check-in to the office's roll-up member; checking in directly", "to", to, "err", err)
	} else {
		a.log.Debug("checking in directly", "why", why)
	}
	if !waitLink && !a.link.Connected() {
		return member.ErrOffline
	}
	err := a.checkin(ctx, false)
	if err == nil {
		a.reported(t)
	}
	return err
}

// told is what a report carried: the revision held and the last run.
type told struct {
	revision uint64
	report   *wire.Report
}

func (a *Agent) reported(t told) {
	a.mu.Lock()
	a.told = t
	a.mu.Unlock()
}

func (a *Agent) officeInfo() *wire.OfficeInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.info
}

// checkinRequest is this member's check-in, for the coordinator directly
// or through the roll-up. A direct check-in takes the peer reports kept
// for it (they go back if it fails); one through the roll-up carries a
// copy and leaves them kept: the roll-up member passes on only a member's
// newest check-in, so a report must ride in each until a direct check-in
// delivers it (the coordinator may then see it more than once, never
// not at all).
func (a *Agent) checkinRequest(take bool) *wire.CheckinRequest {
	req := &wire.CheckinRequest{
		Hostname:       a.cfg.Hostname,
		Addresses:      a.addresses(),
		Revision:       a.state.Revision(),
		GossipAddress:  a.gossip.addr(),
		Version:        Version,
		SessionAddress: a.sessionAddress(),
		UpgradeProblem: a.upgrade.Problem(),
		LastHang:       a.toldHang(time.Now()),
	}
	// The current report, and the runs just before it (CheckinRuns), in
	// at most half a message: the roll-up's batch and the rest go beside.
	req.Backlog, req.Report = a.state.CheckinRuns(wire.MaxCheckinBacklog, wire.MaxMessageSize/2)
	if a.fetcher != nil {
		req.ArtifactBytes = a.fetcher.ArtifactBytes()
	}
	a.mu.Lock()
	req.PeerReports = append([]string(nil), a.peerReports...)
	if take {
		a.peerReports = nil
	}
	req.OfficeDigest = wire.OfficeDigest(a.info)
	if a.id.NeedsPass(time.Now()) {
		req.GossipKey = a.id.GossipPublic()
	}
	req.CaFingerprint = a.id.CAFingerprint()
	a.mu.Unlock()
	return req
}

// takePass keeps a member pass the coordinator issued, and announces it.
func (a *Agent) takePass(sp *wire.SignedMemberPass) {
	pass, changed, err := a.id.TakePass(filepath.Join(a.cfg.DataDir, "identity"), sp, time.Now())
	if err != nil {
		a.log.Warn("member pass from the coordinator", "err", err)
	}
	if !changed {
		return
	}
	if err := a.gossip.setPass(pass); err != nil {
		a.log.Warn("announce member pass", "err", err)
	}
}

// checkin checks in directly, carrying the office's pending check-ins
// when this member is the roll-up member; passOn says it is made to pass
// those on, not to report.
func (a *Agent) checkin(ctx context.Context, passOn bool) error {
	a.checkinMu.Lock()
	defer a.checkinMu.Unlock()
	req := a.checkinRequest(true)
	// Others' check-ins in what room this one leaves in a message, with
	// some to spare for the request's framing.
	req.Rollup = a.rollup.batchWithin(min(batchBytes, wire.MaxMessageSize-proto.Size(req)-64<<10))
	resp, err := a.link.Call(ctx, &wire.Request{Body: &wire.Request_Checkin{Checkin: req}})
	if err != nil {
		a.mu.Lock()
		// Told next time; no more than a check-in carries, however many
		// fail in a row.
		a.peerReports = append(req.PeerReports, a.peerReports...)
		a.peerReports = a.peerReports[:min(len(a.peerReports), maxPeerReports)]
		a.mu.Unlock()
		return err
	}
	info := resp.GetCheckin().GetOffice()
	if info == nil {
		return errors.New("check-in answer carries no office")
	}
	if err := a.state.Ack(resp.GetCheckin().GetAckedSeq()); err != nil {
		a.log.Warn("forget acknowledged reports", "err", err)
	}
	a.rollup.clock(resp.GetCheckin().GetServerUnix())
	a.rollup.checkedIn(passOn)
	if len(req.Rollup) > 0 {
		a.rollup.carried(req.Rollup, resp.GetCheckin().GetRollupAcks())
	}
	if sp := resp.GetCheckin().GetMemberPass(); sp != nil {
		a.takePass(sp)
	}
	a.id.TakeCAs(resp.GetCheckin().GetCaCertificates(), filepath.Join(a.cfg.DataDir, "identity"), a.log)
	a.id.RenewIfDue(ctx, a.link.Call, filepath.Join(a.cfg.DataDir, "identity"), a.log)
	a.afterCheckin(ctx, resp.GetCheckin())
	a.mu.Lock()
	old := a.info
	a.info = info
	moved := a.office != info.GetName()
	if moved {
		a.log.Info("placed in office", "from", a.office, "to", info.GetName(), "roaming", info.GetRoaming())
		a.office = info.GetName()
	}
	a.mu.Unlock()
	a.saveOffice(old, info) // check-ins are one at a time (checkinMu)
	if err := a.gossip.set(a.gossipKeys(info)); err != nil {
		a.log.Warn("office gossip", "err", err)
	}
	a.savePeers()
	if seeds := a.strangers(info.GetGossipSeeds()); len(seeds) > 0 {
		if a.gossip.numPeers() == 0 {
			if n, err := a.gossip.join(seeds); err != nil {
				a.log.Debug("join office gossip", "seeds", seeds, "joined", n, "err", err)
			}
		} else if a.merging.CompareAndSwap(false, true) {
			// Members that enrolled at the same moment can have found
			// each other in groups that know nothing of one another:
			// a seed this member has not heard of joins the two. In the
			// background: a seed that is gone can take a dial timeout.
			go func() {
				defer a.merging.Store(false)
				n, err := a.gossip.join(seeds)
				a.log.Debug("join office members not heard of", "seeds", seeds, "joined", n, "err", err)
			}()
		}
	}
	return nil
}

// strangers are the seeds that are neither this member nor a peer it
// knows in its office's gossip.
func (a *Agent) strangers(seeds []string) []string {
	if len(seeds) == 0 {
		return nil
	}
	known := map[string]bool{a.gossip.addr(): true}
	for _, p := range a.gossip.peers() {
		known[p.Addr] = true
	}
	var out []string
	for _, s := range seeds {
		if !known[s] {
			out = append(out, s)
		}
	}
	return out
}

// sync takes a newer signed policy from the coordinator, if there is one
// and the office does not hand it over first.
func (a *Agent) sync(ctx context.Context) error {
	a.mu.Lock()
	want := a.info.GetRevision()
	a.mu.Unlock()
	if a.awaitOffice(want) {
		return nil
	}
	return a.syncTo(ctx, want)
}

// officeGrace is how long a member whose check-in tells of a newer
// revision waits for its office to hand it over before it asks the
// coordinator: the coordinator has pushed it to a few members, and
// gossip carries it to the rest in well under that, so the coordinator
// sends a revision a few times per office, not once per member.
const officeGrace = 3 * time.Second

// awaitOffice reports whether the member should wait for its office to
// hand over revision want rather than ask the coordinator now: it is a
// member of an office whose gossip it is in, and the revision was first
// heard of less than officeGrace ago. Waiting, it asks a peer, and asks
// the coordinator itself once the grace is over.
func (a *Agent) awaitOffice(want uint64) bool {
	office, roaming := a.Office()
	if roaming || want <= a.state.RevisionIn(office) || a.gossip.numPeers() == 0 {
		return false
	}
	a.mu.Lock()
	first := want > a.heard
	if first {
		a.heard, a.heardAt = want, time.Now()
	}
	waiting := time.Since(a.heardAt) < officeGrace
	a.mu.Unlock()
	if first {
		a.peers.askAny()
		time.AfterFunc(officeGrace, func() {
			if a.state.RevisionIn(office) < want {
				a.notice(want) // the loop takes it from the coordinator
				a.trigger()
			}
		})
	}
	return waiting
}

// syncTo takes the signed policy from the coordinator if it is newer than
// the one held and want says there is one.
func (a *Agent) syncTo(ctx context.Context, want uint64) error {
	a.mu.Lock()
	office := a.office
	a.mu.Unlock()
	have := a.state.RevisionIn(office)
	if want <= have {
		return nil
	}
	resp, err := a.link.Call(ctx, &wire.Request{Body: &wire.Request_Policy{Policy: &wire.PolicyRequest{HaveRevision: have}}})
	if err != nil {
		return err
	}
	sp := resp.GetPolicy().GetPolicy()
	if sp == nil {
		return nil
	}
	return a.acceptFromCoordinator(sp)
}

// acceptFromCoordinator takes a signed policy the coordinator sent.
func (a *Agent) acceptFromCoordinator(sp *wire.SignedPolicy) error {
	a.mu.Lock()
	office := a.office
	a.mu.Unlock()
	p, err := a.state.Accept(sp, office, a.id.ID)
	if errors.Is(err, state.ErrStale) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("refused policy from the coordinator: %w", err)
	}
	a.policyAccepted(p, "coordinator")
	return nil
}

// policyAccepted announces a newly accepted policy to the office and gets
// it applied.
func (a *Agent) policyAccepted(p *wire.Policy, from string) {
	a.revision.Set(float64(p.GetRevision()))
	// A policy of this agent's own is for nobody else: not spread.
	if a.peers != nil {
		if sp := a.state.Shareable(); sp != nil {
			a.peers.spread(sp, p.GetRevision())
		}
	}
	a.log.Info("policy accepted", "office", p.GetOffice(), "revision", p.GetRevision(), "items", len(p.GetItems()), "from", from, "own", p.GetAgent() != "")
	// Live sessions the new permission lists no longer allow end now.
	if a.sessions != nil {
		a.sessions.Recheck()
	}
	a.trigger()
}

// reportPeer keeps what an office peer did wrong (what, and detail when
// there is more to say) for the next check-in. peer is how the report
// names it: a peer message's sender only as it calls itself (claimed).
//
// It does not wake the loop: every check-in that carries a report goes
// directly to the coordinator, and a woken loop with one pending runs the
// whole policy too — so a forged message a few times a second from one
// holder of the office key would keep every member of the office running
// its policy and checking in. The report goes with the next check-in,
// and the same peer doing the same thing is reported once an interval.
func (a *Agent) reportPeer(peer, what, detail string) {
	every := a.interval()
	text := peer + ": " + what
	if detail != "" {
		text += ": " + detail
	}
	key := peer + "\x00" + what
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if at, ok := a.peerReported[key]; ok && now.Sub(at) < every {
		return
	}
	if len(a.peerReported) >= maxPeerReported {
		for k, at := range a.peerReported {
			if now.Sub(at) >= every {
				delete(a.peerReported, k)
			}
		}
		if len(a.peerReported) >= maxPeerReported {
			return // as many as a check-in carries, this interval
		}
	}
	if a.peerReported == nil {
		a.peerReported = map[string]time.Time{}
	}
	a.peerReported[key] = now
	if len(a.peerReports) < maxPeerReports {
		a.peerReports = append(a.peerReports, text)
	}
}

const (
	// maxPeerReports bounds the reports one check-in carries (the
	// coordinator takes up to wire.MaxCheckinPeerReports).
	maxPeerReports = 32
	// maxPeerReported bounds the peers and misdeeds remembered as
	// reported this interval.
	maxPeerReported = 256
)

func (a *Agent) serveMetrics(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Addr: a.cfg.MetricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func localAddresses() []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLinkLocalUnicast() {
			out = append(out, ipn.IP.String())
		}
		if len(out) == 16 {
			break
		}
	}
	return out
}

// presigner asks the coordinator for a download URL.
type presigner struct{ link *member.Client }

func (p presigner) Presign(ctx context.Context, sha string) (string, error) {
	// Bounded: a run waiting for a coordinator that is away would make
	// no progress until it came back, and be taken for hung.
	ctx, cancel := context.WithTimeout(ctx, coordinatorWait)
	defer cancel()
	resp, err := p.link.Call(ctx, &wire.Request{Body: &wire.Request_Presign{Presign: &wire.PresignRequest{Sha256: sha}}})
	if err != nil {
		return "", err
	}
	return resp.GetPresign().GetUrl(), nil
}

// content picks the sources for the office's current mode.
type content struct {
	a *Agent
	f *fetch.Fetcher
}

func (c content) Get(ctx context.Context, art *wire.Artifact) (string, error) {
	c.a.mu.Lock()
	info := c.a.info
	c.a.mu.Unlock()
	src := fetch.Sources{Direct: true, Office: info.GetName(), Relays: relayURLs(info, c.a.log)}
	if op := c.a.officePeers; op != nil && !info.GetRoaming() {
		src.Peers = op
	}
	return c.f.Get(ctx, art, src)
}

func (a *Agent) peersFile() string { return filepath.Join(a.cfg.DataDir, "state", "peers.json") }

// savePeers remembers a few live office peers' addresses for the next
// start. It writes only when one of those it kept is gone (or it kept
// fewer than it could): not at every check-in of every member.
func (a *Agent) savePeers() {
	peers := a.gossip.peers()
	live := make(map[string]bool, len(peers))
	for _, p := range peers {
		live[p.Addr] = true
	}
	kept, _ := a.keptPeers.Load().([]string)
	if len(kept) == min(maxKeptPeers, len(live)) && !slices.ContainsFunc(kept, func(addr string) bool { return !live[addr] }) {
		return
	}
	var addrs []string
	for _, p := range peers {
		if len(addrs) == maxKeptPeers {
			break
		}
		addrs = append(addrs, p.Addr)
	}
	if len(addrs) == 0 {
		return
	}
	b, err := json.Marshal(addrs)
	if err == nil {
		err = fsutil.WriteFileAtomic(a.peersFile(), b, 0o600)
	}
	if err != nil {
		a.log.Debug("save office peers", "err", err)
		return
	}
	a.keptPeers.Store(addrs)
}

// maxKeptPeers is how many office peers' addresses are kept for a start.
const maxKeptPeers = 8

// rejoin tries the office's seeds and the peers known before, when this
// member is alone in its office's gossip: the join at check-in can fail on
// a busy network, and check-ins may be an hour apart.
func (a *Agent) rejoin() {
	if !a.rejoining.CompareAndSwap(false, true) {
		return // the last try is still waiting for an answer
	}
	defer a.rejoining.Store(false)
	a.mu.Lock()
	seeds := a.info.GetGossipSeeds()
	roaming := a.info.GetRoaming()
	a.mu.Unlock()
	if roaming || a.gossip.numPeers() > 0 {
		return
	}
	self := a.gossip.addr()
	var try []string
	for _, s := range append(append([]string(nil), seeds...), a.loadPeers()...) {
		if s != self && !slices.Contains(try, s) {
			try = append(try, s)
		}
	}
	if len(try) == 0 {
		return
	}
	if n, err := a.gossip.join(try); err != nil {
		a.log.Debug("rejoin office gossip", "seeds", try, "joined", n, "err", err)
	}
}

func (a *Agent) loadPeers() []string {
	b, err := os.ReadFile(a.peersFile())
	if err != nil {
		return nil
	}
	var addrs []string
	if json.Unmarshal(b, &addrs) != nil || len(addrs) > maxKeptPeers {
		return nil
	}
	a.keptPeers.Store(addrs)
	return addrs
}
