// Package loadgen runs a fleet of real agents in one process — each with
// its own QUIC connection to the coordinator, its own memberlist node on a
// 127.0.x.y address, its own data directory — to load a coordinator and
// measure how fast policy reaches a fleet. It is a test and benchmark
// tool, not part of a deployment.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/agent"
	"github.com/outposthq/outpost/pkg/freeport"
)

// Config says what fleet to run.
type Config struct {
	Coordinator   string // QUIC host:port
	CAFingerprint string
	Token         string // one enrollment token with enough uses
	Agents        int
	// FirstIP is the first gossip address; the others follow it
	// (127.0.1.1, 127.0.1.2, ... 127.0.1.250, 127.0.2.1, ...).
	FirstIP    string
	DataDir    string // each agent gets a directory below it
	PluginsDir string
	Prefix     string // hostname prefix
	// Fast uses loopback timers for gossip and reconnects (small test
	// fleets); off, the agents run the timers of a real office network,
	// which is what a large fleet on one machine can afford.
	Fast bool
	// ProbeInterval, if set, is every agent's gossip probe interval
	// (agent.Config.GossipProbeInterval).
	ProbeInterval time.Duration
}

// Fleet is a running fleet.
type Fleet struct {
	agents []*agent.Agent
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	errs   []error
}

// Start enrols and starts every agent, and returns once all are running.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (*Fleet, error) {
	if cfg.Agents < 1 {
		return nil, errors.New("loadgen: at least one agent")
	}
	ip := net.ParseIP(cfg.FirstIP).To4()
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("loadgen: first IP %q: want a 127.x.y.z address", cfg.FirstIP)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "load"
	}
	rctx, cancel := context.WithCancel(context.Background())
	f := &Fleet{cancel: cancel}
	for i := range cfg.Agents {
		a, err := f.start(rctx, cfg, i, nextIP(ip, i), logger)
		// Try again (with a new gossip port; enrolled already, if it got
		// that far): the port was free when picked, but a QUIC socket of
		// another agent (bound to every address) can take it before the
		// agent binds it, and on a busy machine a start can time out.
		for try := 0; err != nil && ctx.Err() == nil && try < 3; try++ {
			a, err = f.start(rctx, cfg, i, nextIP(ip, i), logger)
		}
		if err != nil {
			f.Stop()
			return nil, err
		}
		f.agents = append(f.agents, a)
		if ctx.Err() != nil {
			f.Stop()
			return nil, ctx.Err()
		}
	}
	return f, nil
}

func nextIP(first net.IP, i int) net.IP {
	// Hosts .1 to .250 of each /24, then the next /24.
	k := int(first[3]) - 1 + i
	third := int(first[2]) + k/250
	return net.IPv4(127, first[1]+byte(third/256), byte(third%256), byte(1+k%250))
}

// freePort finds a port free for both TCP and UDP on ip (memberlist needs
// both), outside the ephemeral range (see freeport).
func freePort(ip net.IP) (string, error) {
	return freeport.Get(ip.String(), true, true)
}

func (f *Fleet) start(ctx context.Context, cfg Config, i int, ip net.IP, logger *slog.Logger) (*agent.Agent, error) {
	acfg := agent.DefaultConfig()
	acfg.Coordinator, acfg.CAFingerprint, acfg.EnrollToken = cfg.Coordinator, cfg.CAFingerprint, cfg.Token
	dir := filepath.Join(cfg.DataDir, fmt.Sprintf("agent-%05d", i))
	acfg.DataDir, acfg.Root = filepath.Join(dir, "data"), filepath.Join(dir, "root")
	acfg.PluginsDir = cfg.PluginsDir
	acfg.Hostname = fmt.Sprintf("%s-%05d", cfg.Prefix, i)
	acfg.Fast = cfg.Fast
	acfg.GossipProbeInterval = cfg.ProbeInterval
	bind, err := freePort(ip)
	if err != nil {
		return nil, fmt.Errorf("loadgen: agent %d: %w (is %s configured on the loopback interface?)", i, err, ip)
	}
	acfg.GossipBind = bind
	if err := os.MkdirAll(acfg.Root, 0o755); err != nil {
		return nil, err
	}
	a, err := agent.New(acfg, logger, prometheus.NewRegistry())
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		err := a.Run(ctx)
		done <- err
		select {
		case <-a.Ready():
		default:
			return // start returns that error
		}
		if err != nil {
			f.mu.Lock()
			f.errs = append(f.errs, fmt.Errorf("agent %s: %w", acfg.Hostname, err))
			f.mu.Unlock()
		}
	}()
	select {
	case <-a.Ready():
		return a, nil
	case err := <-done:
		return nil, fmt.Errorf("loadgen: agent %s did not start: %w", acfg.Hostname, err)
	case <-time.After(5 * time.Minute):
		// Enrolling thousands on a busy machine: an attempt may time out
		// and be retried after a backoff.
		return nil, fmt.Errorf("loadgen: agent %s did not start in 5 minutes", acfg.Hostname)
	}
}

// Agents are the fleet's agents.
func (f *Fleet) Agents() []*agent.Agent { return f.agents }

// Revisions counts agents by the revision they hold.
func (f *Fleet) Revisions() map[uint64]int {
	out := map[uint64]int{}
	for _, a := range f.agents {
		out[a.Revision()]++
	}
	return out
}

// WaitRevision waits until every agent holds rev or newer and returns how
// long each took from since, sorted.
func (f *Fleet) WaitRevision(ctx context.Context, rev uint64, since time.Time) ([]time.Duration, error) {
	took := make([]time.Duration, len(f.agents))
	left := len(f.agents)
	for left > 0 {
		for i, a := range f.agents {
			if took[i] == 0 && a.Revision() >= rev {
				took[i] = time.Since(since)
				left--
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("revision %d reached %d of %d agents: %w", rev, len(f.agents)-left, len(f.agents), ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	return took, nil
}

// Percentile of sorted durations, p in (0, 100].
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Stop stops every agent and returns what went wrong while they ran.
func (f *Fleet) Stop() error {
	f.cancel()
	f.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	return errors.Join(f.errs...)
}
