// Command outpost-agent runs the Outpost agent on a managed computer.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/outposthq/outpost/agent"
	"github.com/outposthq/outpost/pkg/config"
	"github.com/outposthq/outpost/pkg/logging"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "outpost-agent:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("outpost-agent", flag.ContinueOnError)
	path := fs.String("config", os.Getenv("OUTPOST_AGENT_CONFIG"), "YAML configuration file (else OUTPOST_AGENT_CONFIG names it)")
	dataDir := fs.String("data-dir", "", "data directory (identity, state, content cache)")
	root := fs.String("root", "", "directory the plugins act in (default /)")
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: outpost-agent [flags]\n\nRuns the Outpost agent. Settings come from defaults, then --config, then\nOUTPOST_AGENT_* variables (e.g. OUTPOST_AGENT_ENROLL_TOKEN), then these flags.\n\n")
		fs.PrintDefaults()
	}
	if help, err := config.ParseFlags(fs, os.Args[1:]); help || err != nil {
		return err
	}
	if *version {
		fmt.Println(agent.Version)
		return nil
	}
	cfg, err := agent.LoadConfig(*path, os.Getenv)
	if err != nil {
		return err
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if *root != "" {
		cfg.Root = *root
	}
	log, err := logging.New(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a, err := agent.New(cfg, log, reg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return a.Run(ctx)
}
