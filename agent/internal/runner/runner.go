// Package runner applies a verified policy on the host: for each item it
// gets the artifact, asks the item kind's plugin (a go-plugin subprocess)
// what the host looks like, applies the item when it differs, and writes
// down what happened in words. It does not talk to the coordinator.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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

// Config says where plugins are and where they act.
type Config struct {
	PluginsDir  string
	Root        string
	CallTimeout time.Duration // per plugin call
}

// Runner applies policies, one run at a time.
type Runner struct {
	cfg     Config
	content ContentGetter
	log     *slog.Logger
	runMu   sync.Mutex

	mu      sync.Mutex
	clients map[string]*plugins.Client

	items *prometheus.GaugeVec
	runs  *prometheus.CounterVec
}

// New builds a runner; plugins start on first use.
func New(cfg Config, content ContentGetter, logger *slog.Logger, reg prometheus.Registerer) (*Runner, error) {
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 10 * time.Minute
	}
	r := &Runner{cfg: cfg, content: content, log: logger.With("component", "runner"), clients: map[string]*plugins.Client{},
		items: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outpost_agent_items", Help: "Policy items by status after the last run."}, []string{"status"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_agent_runs_total", Help: "Policy runs by outcome."}, []string{"outcome"}),
	}
	for _, c := range []prometheus.Collector{r.items, r.runs} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return r, nil
}

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

// Run applies every item of p and returns the report. Items are handled
// in policy order; one item failing does not stop the others.
func (r *Runner) Run(ctx context.Context, p *wire.Policy) *wire.Report {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	report := &wire.Report{Revision: p.GetRevision(), AtUnix: time.Now().Unix()}
	counts := map[string]int{}
	for _, it := range p.GetItems() {
		ir := r.item(ctx, it)
		ir.AtUnix = time.Now().Unix()
		report.Items = append(report.Items, ir)
		counts[statusName(ir.GetStatus())]++
		if ir.GetStatus() == wire.ItemReport_STATUS_FAILED {
			r.log.Warn("item failed", "item", it.GetId(), "revision", p.GetRevision(), "reason", ir.GetMessage())
		} else if ir.GetChanged() {
			r.log.Info("item applied", "item", it.GetId(), "revision", p.GetRevision(), "message", ir.GetMessage())
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
	fail := func(format string, args ...any) *wire.ItemReport {
		ir.Status = wire.ItemReport_STATUS_FAILED
		ir.Message = fmt.Sprintf(format, args...)
		return ir
	}
	pl, err := r.plugin(ctx, it.GetKind())
	if err != nil {
		return fail("%v", err)
	}
	callCtx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	scan, err := pl.Scan(callCtx, &pb.ScanRequest{Root: r.cfg.Root, Items: []*wire.Item{it}})
	if err != nil {
		return fail("scan: %v", err)
	}
	if st := find(scan, it.GetId()); st != nil {
		if !st.GetApplicable() {
			ir.Status, ir.Message = wire.ItemReport_STATUS_NOT_APPLICABLE, st.GetMessage()
			return ir
		}
		if st.GetCompliant() {
			ir.Status, ir.Message = wire.ItemReport_STATUS_COMPLIANT, st.GetMessage()
			return ir
		}
	}
	var path string
	if it.GetState() == wire.State_STATE_PRESENT && it.GetArtifact().GetSha256() != "" {
		path, err = r.content.Get(ctx, it.GetArtifact())
		if err != nil {
			if ctx.Err() != nil {
				ir.Status, ir.Message = wire.ItemReport_STATUS_PENDING, "interrupted while fetching content"
				return ir
			}
			return fail("content not available, nothing installed: %v", err)
		}
	}
	res, err := pl.Apply(callCtx, &pb.ApplyRequest{Root: r.cfg.Root, Item: it, ArtifactPath: path})
	if err != nil {
		if errors.Is(err, plugins.ErrExited) {
			return fail("apply: %v (the plugin will be restarted on the next run)", err)
		}
		return fail("apply: %v", err)
	}
	ir.Status = wire.ItemReport_STATUS_COMPLIANT
	ir.Changed, ir.RebootRequired, ir.Message = res.GetChanged(), res.GetRebootRequired(), res.GetMessage()
	return ir
}

func find(s *pb.ScanResponse, id string) *pb.ItemState {
	for _, st := range s.GetItems() {
		if st.GetId() == id {
			return st
		}
	}
	return nil
}
