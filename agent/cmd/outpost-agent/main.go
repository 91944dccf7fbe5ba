// Command outpost-agent runs the Outpost agent on a managed computer.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/outposthq/outpost/agent"
	"github.com/outposthq/outpost/pkg/config"
	"github.com/outposthq/outpost/pkg/fsutil"
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
	checkConfig := fs.Bool("check-config", false, "check the settings (file, environment, flags) and exit; a running agent asks this of a new version of itself before it restarts into it")
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
	if *checkConfig {
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("agent config: %w", err)
		}
		fmt.Println("the settings are valid for outpost-agent", agent.Version)
		return nil
	}
	log, err := logging.New(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var opts []agent.Option
	exe, exeErr := startedFrom()
	// The image running, even once its file is replaced.
	running := runningImagePath
	if _, err := os.Stat(running); err != nil {
		running = exe
	}
	// From here a stop asked for is told apart from a crash: the trial
	// below counts this start, and a stop must take the count back.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if exeErr == nil {
		// A rollback cut short by a kill leaves its temporary file beside
		// the executable (or the file its symlink points to).
		fsutil.RemoveLeftovers(exe, time.Hour)
		if target, err := filepath.EvalSymlinks(exe); err == nil && target != exe {
			fsutil.RemoveLeftovers(target, time.Hour)
		}
	}
	var trial *agent.Trial
	if exeErr == nil && canExec {
		// Kept open: once the file is replaced, this is the version a
		// rollback puts back.
		image, err := os.Open(running)
		if err != nil {
			log.Warn("the agent cannot open its own executable; it will not restart into an upgraded one by itself", "err", err)
		} else {
			opts = append(opts, agent.WithExecutable(exe, os.Args[1:]), agent.WithRunningImage(image))
		}
		// This version may be on trial after an upgrade: one that keeps
		// stopping before it has run a while goes back to the version
		// it replaced.
		t, back, err := agent.BeginTrial(cfg.DataDir, running)
		switch {
		case err != nil:
			log.Error("the upgrade's trial", "err", err)
		case back != "":
			log.Error("this version is refused after its upgrade (it kept stopping); the version it replaced is back in its place", "version", agent.Version, "path", back)
			if ctx.Err() != nil {
				return nil // stopped meanwhile: the next start runs it
			}
			return restartInto(back, os.Args[1:])
		case t != nil:
			trial = t
			opts = append(opts, agent.WithTrial(t))
		}
	} else if exeErr != nil {
		log.Warn("the agent cannot find its own executable; it will not restart into an upgraded one by itself", "err", exeErr)
	}
	a, err := agent.New(cfg, log, reg, opts...)
	if err != nil {
		return err
	}
	err = a.Run(ctx)
	signalled := ctx.Err() != nil
	stop()
	if signalled && !errors.Is(err, agent.ErrHung) {
		// Asked to stop, and stopped: not a failure of this version. One
		// that hung at the stop counts as one that crashed.
		trial.Stopped()
	}
	if errors.Is(err, agent.ErrRestart) && !signalled {
		// Same process id, same arguments and environment: the service
		// manager sees the agent go on, now as the new version — but only
		// into the file that passed its checks; one put there since is
		// not run unchecked: the version running now starts again instead
		// and checks it.
		if a.UpgradeCurrent() {
			return restartInto(exe, os.Args[1:])
		}
		// Not a failure of this version, should it be on trial.
		trial.Stopped()
		log.Warn("the new agent executable was replaced again since its checks; starting the running version again to check what is there now", "path", exe)
		return restartInto(running, os.Args[1:])
	}
	return err
}

// startedFrom is the path the agent was started by, absolute, symlinks
// kept: a package manager that switches a symlink to another version
// upgrades the agent as one that renames a file into place does.
func startedFrom() (string, error) {
	arg0 := os.Args[0]
	if !strings.ContainsRune(arg0, os.PathSeparator) {
		p, err := exec.LookPath(arg0)
		if err != nil {
			return os.Executable()
		}
		arg0 = p
	}
	return filepath.Abs(arg0)
}
