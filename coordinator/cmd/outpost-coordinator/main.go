// Command outpost-coordinator runs the Outpost coordinator.
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

	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/pkg/config"
	"github.com/outposthq/outpost/pkg/logging"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "outpost-coordinator:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) > 1 && os.Args[1] == "restore" {
		return restore(os.Args[2:])
	}
	fs := flag.NewFlagSet("outpost-coordinator", flag.ContinueOnError)
	path := fs.String("config", os.Getenv("OUTPOST_COORDINATOR_CONFIG"), "YAML configuration file (else OUTPOST_COORDINATOR_CONFIG names it)")
	dataDir := fs.String("data-dir", "", "data directory: store, CA and keys, admin token (default "+coordinator.DefaultConfig().DataDir+"); back it up with outpost backup")
	httpAddr := fs.String("http-addr", "", "plain-HTTP admin listen address (default 127.0.0.1:8020; \"\" turns it off)")
	httpsAddr := fs.String("https-addr", "", "HTTPS admin listen address (default :8363; \"\" turns it off)")
	quicAddr := fs.String("quic-addr", "", "QUIC listen address for agents and relays (default :8027)")
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: outpost-coordinator [flags]\n       outpost-coordinator restore [flags] BACKUP\n\nRuns the Outpost coordinator. Settings come from defaults, then --config,\nthen OUTPOST_COORDINATOR_* variables (e.g. OUTPOST_COORDINATOR_FILE_SERVER_ENDPOINT),\nthen these flags. 'restore -h' tells how to restore a backup.\n\n")
		fs.PrintDefaults()
	}
	if help, err := config.ParseFlags(fs, os.Args[1:]); help || err != nil {
		return err
	}
	if *version {
		fmt.Println(coordinator.Version)
		return nil
	}
	cfg, err := coordinator.LoadConfig(*path, os.Getenv)
	if err != nil {
		return err
	}
	// A flag given wins, even empty: --http-addr "" turns plain HTTP off.
	fields := map[string]struct{ from, to *string }{"data-dir": {dataDir, &cfg.DataDir}, "http-addr": {httpAddr, &cfg.HTTPAddr},
		"https-addr": {httpsAddr, &cfg.HTTPSAddr}, "quic-addr": {quicAddr, &cfg.QUICAddr}}
	fs.Visit(func(f *flag.Flag) {
		if v, ok := fields[f.Name]; ok {
			*v.to = *v.from
		}
	})
	log, err := logging.New(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c, err := coordinator.New(cfg, log, reg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return c.Run(ctx)
}
