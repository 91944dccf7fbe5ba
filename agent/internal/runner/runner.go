// Package runner applies a verified policy on the host: for each item it
// gets the artifact, asks the item kind's plugin (a go-plugin subprocess)
// what the host looks like, applies the item when it differs, and writes
// down what happened in words. It does not talk to the coordinator.
package runner

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/safetext"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins"
	pb "github.com/outposthq/outpost/plugins/proto"
)

// ContentGetter returns a verified local path for an artifact.
type ContentGetter interface {
	Get(ctx context.Context, a *wire.Artifact) (string, error)
}

// Plugin is what the runner needs of a plugin.
type Plugin interface {
	Scan(ctx context.Context, req *pb.ScanRequest) (*pb.ScanResponse, error)
	Apply(ctx context.Context, req *pb.ApplyRequest) (*pb.ApplyResponse, error)
}

// Config says where plugins are and where they act, and when.
type Config struct {
	PluginsDir  string
	Root        string
	CallTimeout time.Duration // per plugin call

	// Location returns the office's time zone, in which item windows are
	// read; nil means UTC.
	Location func() *time.Location
	// Clock returns the time; nil means time.Now. Tests move it.
	Clock func() time.Time
	// Retries is how many more times a failed apply is tried within a run
	// (default 2; negative for none), waiting RetryBase, then twice that,
	// and so on up to RetryCap. A plugin that hung or crashed is not
	// retried within the run: the next run tries again with a fresh one.
	Retries   int
	RetryBase time.Duration // default 1s
	RetryCap  time.Duration // default 30s
	// Reboot reboots the host when an item needs it and its reboot policy
	// allows; nil means DefaultReboot.
	Reboot func(ctx context.Context, root, reason string) error
	// RebootNeeded, if set, is told at once (before the next item) of an
	// item whose apply needs a reboot, so that a stop before the run ends
	// does not lose it.
	RebootNeeded func(item string)
	// PendingReboots, if set, names the items an earlier run of this boot
	// applied and no reboot followed (a stop came first): a run reboots
	// for them as for its own, when their reboot policy allows.
	PendingReboots func() []string
}

// Runner applies policies, one run at a time.
type Runner struct {
	cfg     Config
	content ContentGetter
	log     *slog.Logger
	runMu   sync.Mutex

	mu      sync.Mutex
	clients map[string]*plugins.Client

	// compliant remembers which items were compliant at the end of the
	// last run, as the digest of the item they complied with, so that a
	// change found later under the same item is reported as drift (and a
	// changed item is not).
	compliant map[string]string

	// steps counts the steps of runs taken so far (an item begun, a
	// plugin call made or answered, content fetched): a hang watchdog
	// tells a long run from a stuck one by it (Progress).
	steps atomic.Uint64

	items    *prometheus.GaugeVec
	runs     *prometheus.CounterVec
	repaired *prometheus.CounterVec
	attempts *prometheus.CounterVec
}

// New builds a runner; plugins start on first use.
func New(cfg Config, content ContentGetter, logger *slog.Logger, reg prometheus.Registerer) (*Runner, error) {
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 10 * time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Retries == 0 {
		cfg.Retries = 2
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = time.Second
	}
	if cfg.RetryCap <= 0 {
		cfg.RetryCap = 30 * time.Second
	}
	if cfg.Reboot == nil {
		cfg.Reboot = DefaultReboot
	}
	r := &Runner{cfg: cfg, content: content, log: logger.With("component", "runner"), clients: map[string]*plugins.Client{},
		compliant: map[string]string{},
		items: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outpost_agent_items", Help: "Policy items by status after the last run."}, []string{"status"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_agent_runs_total", Help: "Policy runs by outcome."}, []string{"outcome"}),
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_agent_drift_repaired_total", Help: "Items found changed since they were compliant, and repaired, by kind."}, []string{"kind"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_agent_apply_attempts_total", Help: "Plugin apply calls by kind and outcome."}, []string{"kind", "outcome"}),
	}
	for _, c := range []prometheus.Collector{r.items, r.runs, r.repaired, r.attempts} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Progress is a count that grows with every step a run takes: an item
// begun, a plugin call made or answered, its content fetched. Between two
// steps a run waits at most one plugin call (CallTimeout) or one retry's
// wait.
func (r *Runner) Progress() uint64 { return r.steps.Load() }

// Close stops every plugin process.
func (r *Runner) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for kind, c := range r.clients {
		c.Close()
		delete(r.clients, kind)
	}
}

// plugin returns a live client for kind, starting or restarting it.
func (r *Runner) plugin(ctx context.Context, kind string) (Plugin, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.clients[kind]; ok {
		if !c.Exited() {
			return c, nil
		}
		if err := c.Reopen(ctx); err == nil {
			return c, nil
		}
		c.Close()
		delete(r.clients, kind)
	}
	path := filepath.Join(r.cfg.PluginsDir, "outpost-plugin-"+kind)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no plugin for kind %q: %s is missing", kind, path)
	}
	c, err := plugins.Open(ctx, path, r.log)
	if err != nil {
		return nil, err
	}
	r.clients[kind] = c
	return c, nil
}

// Remember takes what was compliant at the end of the last run before a
// restart — that run's report and the policy it ran — so that drift found
// by the first run after a restart is still reported as drift.
func (r *Runner) Remember(p *wire.Policy, last *wire.Report) {
	if p == nil || last == nil || last.GetRevision() != p.GetRevision() {
		return
	}
	r.runMu.Lock()
	defer r.runMu.Unlock()
	ok := map[string]bool{}
	for _, ir := range last.GetItems() {
		ok[ir.GetId()] = ir.GetStatus() == wire.ItemReport_STATUS_COMPLIANT
	}
	for _, it := range p.GetItems() {
		if ok[it.GetId()] {
			r.compliant[it.GetId()] = itemDigest(it)
		}
	}
}

// itemDigest identifies what an item asks for.
func itemDigest(it *wire.Item) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(it)
	sum := sha256.Sum256(b)
	return string(sum[:])
}

// Run applies every item of p and returns the report. Items are handled
// in policy order; one item failing does not stop the others.
func (r *Runner) Run(ctx context.Context, p *wire.Policy) *wire.Report {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	report := &wire.Report{Revision: p.GetRevision(), AtUnix: r.cfg.Clock().Unix()}
	counts := map[string]int{}
	var reboots []string
	seen := map[string]bool{}
	for _, it := range p.GetItems() {
		ir := r.item(ctx, it)
		ir.AtUnix = r.cfg.Clock().Unix()
		// What the coordinator keeps of it: a report of many items with
		// long messages (hook output, errors) must fit a check-in.
		ir.Message = safetext.Clip(ir.GetMessage(), maxItemMessage)
		report.Items = append(report.Items, ir)
		seen[it.GetId()] = true
		if ir.GetStatus() == wire.ItemReport_STATUS_COMPLIANT {
			r.compliant[it.GetId()] = itemDigest(it)
		} else {
			delete(r.compliant, it.GetId())
		}
		if ir.GetRebootRequired() && ir.GetStatus() == wire.ItemReport_STATUS_COMPLIANT && r.cfg.RebootNeeded != nil {
			r.cfg.RebootNeeded(it.GetId())
		}
		if ir.GetRebootRequired() && it.GetReboot() == RebootIfNeeded && ir.GetStatus() == wire.ItemReport_STATUS_COMPLIANT {
			reboots = append(reboots, it.GetId())
		}
		counts[statusName(ir.GetStatus())]++
		if ir.GetStatus() == wire.ItemReport_STATUS_FAILED {
			r.log.Warn("item failed", "item", it.GetId(), "revision", p.GetRevision(), "reason", ir.GetMessage())
		} else if ir.GetChanged() {
			r.log.Info("item applied", "item", it.GetId(), "revision", p.GetRevision(), "message", ir.GetMessage())
		}
	}
	for id := range r.compliant {
		if !seen[id] {
			delete(r.compliant, id)
		}
	}
	// A run may end after the window of an item that asked for a reboot
	// closed (a later item's download took that long): the reboot waits
	// for a run inside the window (RebootNeeded kept the need).
	reboots = slices.DeleteFunc(reboots, func(id string) bool {
		i := slices.IndexFunc(p.GetItems(), func(it *wire.Item) bool { return it.GetId() == id })
		if i < 0 || i >= len(report.GetItems()) || r.inWindow(p.GetItems()[i]) {
			return false
		}
		ir := report.GetItems()[i]
		ir.Message = strings.Replace(ir.GetMessage(), rebootingNow, "; reboot required: the window closed before the run ended, so not rebooting until a run inside it", 1)
		return true
	})
	reboots = append(reboots, r.pendingReboots(p, report, reboots)...)
	if len(reboots) > 0 {
		reason := "outpost: reboot needed by " + strings.Join(reboots, ", ")
		if err := r.cfg.Reboot(ctx, r.cfg.Root, reason); err != nil {
			r.log.Error("reboot failed", "items", reboots, "err", err)
		} else {
			r.log.Warn("rebooting", "items", reboots)
		}
	}
	r.items.Reset()
	for s, n := range counts {
		r.items.WithLabelValues(s).Set(float64(n))
	}
	outcome := "ok"
	if counts["failed"] > 0 {
		outcome = "failed"
	}
	r.runs.WithLabelValues(outcome).Inc()
	return report
}

// pendingReboots are the items an earlier run of this boot applied
// without the reboot that should have followed, that this run found
// compliant, whose reboot policy reboots, and whose window is open.
func (r *Runner) pendingReboots(p *wire.Policy, report *wire.Report, have []string) []string {
	if r.cfg.PendingReboots == nil {
		return nil
	}
	pending := r.cfg.PendingReboots()
	var out []string
	for i, it := range p.GetItems() {
		id := it.GetId()
		if !slices.Contains(pending, id) || slices.Contains(have, id) || it.GetReboot() != RebootIfNeeded ||
			report.GetItems()[i].GetStatus() != wire.ItemReport_STATUS_COMPLIANT {
			continue
		}
		if !r.inWindow(it) {
			continue
		}
		out = append(out, id)
	}
	return out
}

// inWindow tells whether it has no window or its window is open now.
func (r *Runner) inWindow(it *wire.Item) bool {
	if it.GetWindow() == "" {
		return true
	}
	w, err := parseWindow(it.GetWindow())
	if err != nil {
		return false
	}
	open, _ := w.open(r.cfg.Clock(), r.location())
	return open
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

func (r *Runner) item(ctx context.Context, it *wire.Item) *wire.ItemReport {
	ir := &wire.ItemReport{Id: it.GetId(), Kind: it.GetKind()}
	r.steps.Add(1)
	defer r.steps.Add(1)
	fail := func(format string, args ...any) *wire.ItemReport {
		ir.Status = wire.ItemReport_STATUS_FAILED
		ir.Message = fmt.Sprintf(format, args...)
		return ir
	}
	pending := func(format string, args ...any) *wire.ItemReport {
		ir.Status = wire.ItemReport_STATUS_PENDING
		ir.Message = fmt.Sprintf(format, args...)
		return ir
	}
	var win *window
	if it.GetWindow() != "" {
		w, err := parseWindow(it.GetWindow())
		if err != nil {
			return fail("%v; nothing applied", err)
		}
		win = &w
	}
	pl, err := r.plugin(ctx, it.GetKind())
	if err != nil {
		return fail("%v", err)
	}
	r.steps.Add(1)
	callCtx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	scan, err := pl.Scan(callCtx, &pb.ScanRequest{Root: r.cfg.Root, Items: []*wire.Item{it}})
	cancel()
	r.steps.Add(1)
	if err != nil {
		return fail("scan: %v", err)
	}
	var scanMsg string
	if st := find(scan, it.GetId()); st != nil {
		if !st.GetApplicable() {
			ir.Status, ir.Message = wire.ItemReport_STATUS_NOT_APPLICABLE, st.GetMessage()
			return ir
		}
		if st.GetCompliant() {
			ir.Status, ir.Message = wire.ItemReport_STATUS_COMPLIANT, st.GetMessage()
			return ir
		}
		scanMsg = st.GetMessage()
	}
	if it.GetReportOnly() {
		// Known to the coordinator but not asked of this host (a patch not
		// approved for the office): say what is missing, change nothing.
		return pending("not approved for this office, nothing changed: %s", scanMsg)
	}
	// closed is the report of an item outside its window, or nil.
	closed := func() *wire.ItemReport {
		if win == nil {
			return nil
		}
		loc := r.location()
		open, wait := win.open(r.cfg.Clock(), loc)
		if open {
			return nil
		}
		msg := fmt.Sprintf("waiting for window %s %s (opens in %s)", win.text, loc, wait.Round(time.Minute))
		if scanMsg != "" {
			msg += ": " + scanMsg
		}
		return pending("%s", msg)
	}
	if ir := closed(); ir != nil {
		return ir
	}
	var path string
	if it.GetState() == wire.State_STATE_PRESENT && it.GetArtifact().GetSha256() != "" {
		path, err = r.content.Get(ctx, it.GetArtifact())
		r.steps.Add(1)
		if err != nil {
			if ctx.Err() != nil {
				return pending("interrupted while fetching content")
			}
			return fail("content not available, nothing installed: %v", err)
		}
		// A download may take hours (a slow WAN link, a relay far
		// away): the window may have closed meanwhile.
		if ir := closed(); ir != nil {
			return ir
		}
	}
	res, err := r.apply(ctx, pl, it, path)
	if err != nil {
		return fail("%v", err)
	}
	ir.Status = wire.ItemReport_STATUS_COMPLIANT
	ir.Changed, ir.RebootRequired, ir.Message = res.GetChanged(), res.GetRebootRequired(), res.GetMessage()
	if d, ok := r.compliant[it.GetId()]; ok && d == itemDigest(it) && res.GetChanged() {
		r.repaired.WithLabelValues(it.GetKind()).Inc()
		// A plugin may say what it found in its own answer too: told once.
		did := strings.Replace(res.GetMessage(), " ("+scanMsg+")", "", 1)
		ir.Message = fmt.Sprintf("repaired drift: %s; %s", scanMsg, did)
	}
	if ir.RebootRequired {
		switch it.GetReboot() {
		case RebootIfNeeded:
			ir.Message += rebootingNow
		case RebootNotify:
			ir.Message += "; reboot required: not rebooting (reboot policy notify-only), reboot the host to finish"
		default:
			ir.Message += "; reboot required: not rebooting (reboot policy never)"
		}
	}
	return ir
}

// maxItemMessage bounds an item's message in a report: the coordinator
// keeps 1 KiB of it, written out (escapes take up to four bytes for one).
const maxItemMessage = 4 << 10

// rebootingNow ends the message of an item whose apply needs a reboot
// that the run ends with.
const rebootingNow = "; reboot required: rebooting now, inside the window"

// Reboot policies an item may have.
const (
	RebootNever    = "never"
	RebootIfNeeded = "if-needed-inside-window"
	RebootNotify   = "notify-only"
)

func (r *Runner) location() *time.Location {
	if r.cfg.Location != nil {
		if loc := r.cfg.Location(); loc != nil {
			return loc
		}
	}
	return time.UTC
}

// apply calls the plugin, retrying ordinary failures with exponential
// backoff up to the cap. A plugin that hung or crashed was killed; it is
// left for the next run, which starts a fresh one.
func (r *Runner) apply(ctx context.Context, pl Plugin, it *wire.Item, path string) (*pb.ApplyResponse, error) {
	wait := r.cfg.RetryBase
	var errs []string
	for attempt := 0; ; attempt++ {
		r.steps.Add(1)
		callCtx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
		res, err := pl.Apply(callCtx, &pb.ApplyRequest{Root: r.cfg.Root, Item: it, ArtifactPath: path})
		cancel()
		r.steps.Add(1)
		if err == nil {
			r.attempts.WithLabelValues(it.GetKind(), "ok").Inc()
			return res, nil
		}
		if errors.Is(err, plugins.ErrExited) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			r.attempts.WithLabelValues(it.GetKind(), "killed").Inc()
			return nil, fmt.Errorf("apply: %v (the plugin will be restarted on the next run)", err)
		}
		if errors.Is(err, plugins.ErrRefused) {
			r.attempts.WithLabelValues(it.GetKind(), "refused").Inc()
			return nil, fmt.Errorf("apply: %v (not tried again: the plugin refuses the item as it stands)", err)
		}
		r.attempts.WithLabelValues(it.GetKind(), "failed").Inc()
		errs = append(errs, err.Error())
		if attempt >= r.cfg.Retries || ctx.Err() != nil {
			if len(errs) == 1 {
				return nil, fmt.Errorf("apply: %s", errs[0])
			}
			return nil, fmt.Errorf("apply failed %d times, last: %s", len(errs), errs[len(errs)-1])
		}
		r.log.Info("apply failed; retrying", "item", it.GetId(), "in", wait, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(wait*2, r.cfg.RetryCap)
	}
}

// DefaultReboot reboots the host in one minute, and only when the root is
// the real system: an agent acting in a test root never reboots its host.
func DefaultReboot(ctx context.Context, root, reason string) error {
	if root != "/" {
		return fmt.Errorf("not rebooting: the plugins' root is %s, not /", root)
	}
	if runtime.GOOS == "windows" {
		return exec.CommandContext(ctx, "shutdown", "/r", "/t", "60", "/c", reason).Run()
	}
	return exec.CommandContext(ctx, "shutdown", "-r", "+1", reason).Run()
}

func find(s *pb.ScanResponse, id string) *pb.ItemState {
	for _, st := range s.GetItems() {
		if st.GetId() == id {
			return st
		}
	}
	return nil
}
