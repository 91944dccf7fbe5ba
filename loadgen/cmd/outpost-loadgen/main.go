// Command outpost-loadgen runs many real agents in one process against a
// coordinator and prints, every few seconds, how many hold each policy
// revision. See package loadgen.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // served only with --pprof, on a loopback address
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/outposthq/outpost/loadgen"
	"github.com/outposthq/outpost/pkg/logging"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "outpost-loadgen:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("outpost-loadgen", flag.ContinueOnError)
	var cfg loadgen.Config
	fs.StringVar(&cfg.Coordinator, "coordinator", "127.0.0.1:8027", "coordinator QUIC `host:port`")
	fs.StringVar(&cfg.CAFingerprint, "ca-fingerprint", "", "the coordinator's CA fingerprint (its data directory's ca.fingerprint)")
	fs.StringVar(&cfg.Token, "token", os.Getenv("OUTPOST_LOADGEN_TOKEN"), "an enrollment token with at least --agents uses (outpost token create --uses N)")
	fs.IntVar(&cfg.Agents, "agents", 100, "how many agents")
	fs.StringVar(&cfg.FirstIP, "first-ip", "127.0.1.1", "the first agent's gossip address; the others follow")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "where the agents keep their state (default: a new temporary directory)")
	fs.StringVar(&cfg.PluginsDir, "plugins-dir", "bin", "where the plugin binaries are")
	every := fs.Duration("every", 5*time.Second, "how often to print the fleet's revisions")
	fs.BoolVar(&cfg.Fast, "fast", false, "loopback gossip timers (small fleets); default: the timers of a real office network")
	fs.DurationVar(&cfg.ProbeInterval, "probe-interval", 0, "every agent's gossip probe interval (default: the agents' own, 800ms); longer fits more agents on a machine and finds dead members later")
	level := fs.String("log-level", "error", "agents' log level")
	pprofAddr := fs.String("pprof", "", "serve Go's profiles (/debug/pprof/) on this loopback `host:port`, to see where a fleet's CPU goes")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	if cfg.CAFingerprint == "" || cfg.Token == "" {
		return fmt.Errorf("--ca-fingerprint and --token are required; see --help")
	}
	if cfg.DataDir == "" {
		dir, err := os.MkdirTemp("", "outpost-loadgen-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.DataDir = dir
	}
	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr); err != nil {
			return err
		}
	}
	log, err := logging.New(os.Stderr, *level, "text")
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	fleet, err := loadgen.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	fmt.Printf("%d agents running after %s\n", cfg.Agents, time.Since(start).Round(time.Millisecond))
	t := time.NewTicker(*every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return fleet.Stop()
		case <-t.C:
			revs := fleet.Revisions()
			keys := make([]uint64, 0, len(revs))
			for r := range revs {
				keys = append(keys, r)
			}
			sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
			fmt.Printf("%s revisions:", time.Now().Format(time.TimeOnly))
			for _, r := range keys {
				fmt.Printf(" r%d=%d", r, revs[r])
			}
			fmt.Println()
		}
	}
}

// servePprof serves net/http/pprof's handlers; loopback only, as profiles
// show the process's memory.
func servePprof(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--pprof %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--pprof %q: want a loopback address", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--pprof: %w", err)
	}
	go http.Serve(ln, nil)
	return nil
}
