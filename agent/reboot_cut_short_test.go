package agent

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/agent/internal/runner"
	"github.com/outposthq/outpost/agent/internal/state"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/plugintest"
)

// A run applies a patch that needs a reboot (item reboot-me,
// reboot policy if-needed-inside-window), then the agent is stopped while a
// later item of the same run is still being applied (systemctl restart, an
// agent upgrade, a SIGKILL, a power cut). That the item needs a reboot
// exists only in the run's in-memory report: agent.apply drops a run cut
// short by ctx (agent.go, "if ctx.Err() != nil { return false }") and a
// SIGKILL loses it likewise, and nothing is written per item. After the
// restart, in the same boot, the plugin's scan says the patch is installed
// (a scan cannot say "reboot required"), so the item is compliant and
// unchanged: the host is never rebooted and no report ever names it as
// waiting for a reboot (outpost agent search --state reboot misses it).
// The patch stays not in effect until something else reboots the host.
// (The crash review found it so.) The agent now records "item X needs a
// reboot since T in boot B" as soon as the plugin says so, before the next
// item; the next run of the same boot reboots for it and reports it.
func TestRebootNeedSurvivesARunCutShort(t *testing.T) {
	bin := plugintest.Build(t, "github.com/outposthq/outpost/plugins/internal/testplugin")
	plugDir := t.TempDir()
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plugDir, "outpost-plugin-test"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	root, dataDir := t.TempDir(), t.TempDir()
	pub, _, _ := ed25519.GenerateKey(nil)
	reboots := 0
	reboot := func(ctx context.Context, _, _ string) error {
		if err := ctx.Err(); err != nil { // as exec.CommandContext does
			return err
		}
		reboots++
		return nil
	}
	policy := &wire.Policy{Office: "berlin", Revision: 1, Items: []*wire.Item{
		{Id: "reboot-me", Kind: "test", State: wire.State_STATE_PRESENT, Reboot: runner.RebootIfNeeded},
		{Id: "hang-once", Kind: "test", State: wire.State_STATE_PRESENT},
	}}
	start := func() (*Agent, *runner.Runner) {
		st, err := state.Open(filepath.Join(dataDir, "state"), pub)
		if err != nil {
			t.Fatal(err)
		}
		a := &Agent{state: st, log: logging.Discard(), bootIDFunc: func() string { return "boot-one" }}
		cfg := runner.Config{PluginsDir: plugDir, Root: root, CallTimeout: time.Minute, Reboot: reboot}
		a.rebootHooks(&cfg)
		run, err := runner.New(cfg, nil, logging.Discard(), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(run.Close)
		return a, run
	}

	// First process: reboot-me is applied, then the agent is stopped while
	// hang-once is being applied.
	a1, run1 := start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a1.apply(ctx, run1, policy) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(root, "misbehaved-hang-once")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("hang-once never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(root, "applied-reboot-me")); err != nil {
		t.Fatal("reboot-me was not applied before the stop")
	}
	cancel()
	<-done
	run1.Close()

	// Second process, same boot.
	a2, run2 := start()
	a2.apply(context.Background(), run2, policy)
	rep := a2.state.Report()
	if reboots != 1 || !slices.Equal(rep.GetRebootItems(), []string{"reboot-me"}) || rep.GetRebootSinceUnix() == 0 {
		t.Fatalf("reboot-me was installed and needs a reboot; after the restart: %d reboots, the report names %v since %d; want 1 reboot, [reboot-me]",
			reboots, rep.GetRebootItems(), rep.GetRebootSinceUnix())
	}

	// After the reboot (another boot), nothing is pending any more.
	a3, run3 := start()
	a3.bootIDFunc = func() string { return "boot-two" }
	a3.apply(context.Background(), run3, policy)
	if rep := a3.state.Report(); reboots != 1 || len(rep.GetRebootItems()) != 0 {
		t.Fatalf("after the reboot: %d reboots, report names %v; want nothing more", reboots, rep.GetRebootItems())
	}
}
