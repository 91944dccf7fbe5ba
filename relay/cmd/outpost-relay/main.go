// Command outpost-relay runs a branch-office relay: a pull-through cache of
// the file server that the office's agents download artifacts from. It only
// wires flags, configuration and signals to relay.Run.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/outposthq/outpost/pkg/config"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/relay"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "outpost-relay:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("outpost-relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags := relay.RegisterFlags(fs)
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: outpost-relay [flags]\n\nRuns an Outpost relay: an office's pull-through cache of the file server,\nwhich the office's agents download artifacts from. Settings come from\ndefaults, then --config (or %s), then %s*\nvariables (e.g. %sENROLL_TOKEN), then these flags. Secrets\n(enroll_token, file_server keys) have no flag.\n\n", relay.ConfigEnv, relay.EnvPrefix, relay.EnvPrefix)
		fs.PrintDefaults()
	}
	if help, err := config.ParseFlags(fs, relay.JoinBoolValues(fs, args)); help || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; see --help", fs.Args())
	}
	if *version {
		fmt.Fprintln(stdout, relay.Version)
		return nil
	}
	cfg, err := flags.Load(getenv)
	if err != nil {
		return err
	}
	logger, err := logging.New(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r, err := relay.New(cfg, logger, reg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return r.Run(ctx)
}
