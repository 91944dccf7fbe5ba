package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/logging"
	ptestutil "github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/plugintest"
)

// pluginsDir builds the real plugin binaries once into one directory, named
// as the runner looks for them.
var (
	buildOnce sync.Once
	builtDir  string
)

func pluginsDir(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outpost-runner-plugins-")
		if err != nil {
			t.Fatal(err)
		}
		for kind, pkg := range map[string]string{
			"package":  "github.com/outposthq/outpost/plugins/packages/cmd/outpost-plugin-package",
			"registry": "github.com/outposthq/outpost/plugins/registry/cmd/outpost-plugin-registry",
			"patch":    "github.com/outposthq/outpost/plugins/patch/cmd/outpost-plugin-patch",
			"test":     "github.com/outposthq/outpost/plugins/internal/testplugin",
		} {
			bin := plugintest.Build(t, pkg)
			b, err := os.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "outpost-plugin-"+kind), b, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		builtDir = dir
	})
	if builtDir == "" {
		t.Fatal("plugins were not built")
	}
	return builtDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

// localContent serves artifacts from the committed sample packages.
type localContent struct{ paths map[string]string }

func (c localContent) Get(_ context.Context, a *wire.Artifact) (string, error) {
	return c.paths[a.GetSha256()], nil
}

func sample(t *testing.T, name string) (string, *wire.Artifact) {
	t.Helper()
	p := filepath.Join(ptestutil.RepoRoot(t), "testdata", "packages", name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return p, &wire.Artifact{Sha256: hex.EncodeToString(sum[:]), Size: int64(len(b)), Name: name}
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func newRunner(t *testing.T, cfg Config, content ContentGetter) (*Runner, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.PluginsDir = pluginsDir(t)
	if cfg.Root == "" {
		cfg.Root = t.TempDir()
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 30 * time.Second
	}
	if cfg.Reboot == nil {
		cfg.Reboot = func(context.Context, string, string) error { return nil }
	}
	r, err := New(cfg, content, logging.Discard(), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r, reg
}

func one(t *testing.T, r *Runner, items ...*wire.Item) *wire.ItemReport {
	t.Helper()
	rep := r.Run(context.Background(), &wire.Policy{Revision: 1, Items: items})
	if len(rep.GetItems()) != 1 {
		t.Fatalf("report has %d items", len(rep.GetItems()))
	}
	return rep.GetItems()[0]
}

func expect(t *testing.T, ir *wire.ItemReport, status wire.ItemReport_Status, changed bool, msg string) {
	t.Helper()
	if ir.GetStatus() != status || ir.GetChanged() != changed || !strings.Contains(ir.GetMessage(), msg) {
		t.Fatalf("report = %v; want %s changed=%v with %q", ir, status, changed, msg)
	}
}

// TestDriftRepairedEveryKind: each kind is installed, drifts by hand,
// is repaired on the next run and reported as repaired drift, then removed.
func TestDriftRepairedEveryKind(t *testing.T) {
	p1, a1 := sample(t, "hello-1.0.0.tar.gz")
	t.Run("registry", func(t *testing.T) {
		root := t.TempDir()
		conf := filepath.Join(root, "etc", "sysctl.d", "99-outpost.conf")
		os.MkdirAll(filepath.Dir(conf), 0o755)
		os.WriteFile(conf, []byte("vm.swappiness = 60\n"), 0o644)
		r, reg := newRunner(t, Config{Root: root}, localContent{})
		item := &wire.Item{Id: "registry:swappiness", Kind: "registry", State: wire.State_STATE_PRESENT,
			Spec: &wire.Item_Registry{Registry: &wire.RegistrySpec{Path: "/etc/sysctl.d/99-outpost.conf", Name: "vm.swappiness", Type: "dword", Data: []string{"10"}}}}
		expect(t, one(t, r, item), wire.ItemReport_STATUS_COMPLIANT, true, "set vm.swappiness")
		expect(t, one(t, r, item), wire.ItemReport_STATUS_COMPLIANT, false, "is \"10\"")
		os.WriteFile(conf, []byte("vm.swappiness = 100\n"), 0o644)
		rep := one(t, r, item)
		expect(t, rep, wire.ItemReport_STATUS_COMPLIANT, true, `repaired drift: vm.swappiness in /etc/sysctl.d/99-outpost.conf is "100"; want "10"`)
		if n := strings.Count(rep.GetMessage(), `is "100"`); n != 1 {
			t.Errorf("the drift is told %d times: %s", n, rep.GetMessage())
		}
		if b, _ := os.ReadFile(conf); string(b) != "vm.swappiness = 10\n" {
			t.Fatalf("after repair %q", b)
		}
		if n := counter(t, reg, "outpost_agent_drift_repaired_total", "registry"); n != 1 {
			t.Fatalf("drift counter = %v", n)
		}
		item.State = wire.State_STATE_ABSENT
		expect(t, one(t, r, item), wire.ItemReport_STATUS_COMPLIANT, true, "restored")
		if b, _ := os.ReadFile(conf); string(b) != "vm.swappiness = 60\n" {
			t.Fatalf("after removal %q; want the original", b)
		}
	})
	t.Run("package", func(t *testing.T) {
		root := t.TempDir()
		r, _ := newRunner(t, Config{Root: root}, localContent{paths: map[string]string{a1.Sha256: p1}})
		item := &wire.Item{Id: "package/hello", Kind: "package", State: wire.State_STATE_PRESENT, Artifact: a1,
			Spec: &wire.Item_Package{Package: &wire.PackageSpec{Name: "hello", Version: "1.0.0"}}}
		expect(t, one(t, r, item), wire.ItemReport_STATUS_COMPLIANT, true, "installed hello 1.0.0")
		bin := filepath.Join(root, "opt", "hello", "bin", "hello")
		if err := os.Remove(bin); err != nil {
			t.Fatal(err)
		}
		expect(t, one(t, r, item), wire.ItemReport_STATUS_COMPLIANT, true, "repaired drift:")
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("removed file not put back: %v", err)
		}
		item.State = wire.State_STATE_ABSENT
		expect(t, one(t, r, item), wire.ItemReport_STATUS_COMPLIANT, true, "removed hello")
	})
}

// TestDriftAcrossRestartAndChangedItems: drift found by the first run after
// a restart is still drift (the runner remembers the last report), while
// an item the policy changed is an update, not drift.
func TestDriftAcrossRestartAndChangedItems(t *testing.T) {
	p1, a1 := sample(t, "hello-1.0.0.tar.gz")
	p2, a2 := sample(t, "hello-2.0.0.tar.gz")
	root := t.TempDir()
	content := localContent{paths: map[string]string{a1.Sha256: p1, a2.Sha256: p2}}
	item := &wire.Item{Id: "package/hello", Kind: "package", State: wire.State_STATE_PRESENT, Artifact: a1,
		Spec: &wire.Item_Package{Package: &wire.PackageSpec{Name: "hello", Version: "1.0.0"}}}
	pol := &wire.Policy{Revision: 1, Items: []*wire.Item{item}}
	r, _ := newRunner(t, Config{Root: root}, content)
	last := r.Run(context.Background(), pol)
	expect(t, last.GetItems()[0], wire.ItemReport_STATUS_COMPLIANT, true, "installed hello 1.0.0")
	r.Close()

	// The agent restarts; meanwhile someone deletes a file.
	if err := os.Remove(filepath.Join(root, "opt", "hello", "bin", "hello")); err != nil {
		t.Fatal(err)
	}
	r2, reg := newRunner(t, Config{Root: root}, content)
	r2.Remember(pol, last)
	expect(t, one(t, r2, item), wire.ItemReport_STATUS_COMPLIANT, true, "repaired drift:")
	if n := counter(t, reg, "outpost_agent_drift_repaired_total", "package"); n != 1 {
		t.Fatalf("drift counter = %v, want 1", n)
	}

	// A new revision asks for 2.0.0 under the same item: an upgrade.
	up := proto.Clone(item).(*wire.Item)
	up.Artifact, up.GetPackage().Version = a2, "2.0.0"
	ir := one(t, r2, up)
	expect(t, ir, wire.ItemReport_STATUS_COMPLIANT, true, "2.0.0")
	if strings.Contains(ir.GetMessage(), "drift") {
		t.Fatalf("an upgrade the policy asked for is reported as drift: %q", ir.GetMessage())
	}
	if n := counter(t, reg, "outpost_agent_drift_repaired_total", "package"); n != 1 {
		t.Fatalf("drift counter = %v after an upgrade, want still 1", n)
	}
}

// TestPatchDriftAndRollback: a patch is installed, undone by hand (the old
// version put back), repaired as drift, and rolled back on removal.
func TestPatchDriftAndRollback(t *testing.T) {
	p1, a1 := sample(t, "hello-1.0.0.tar.gz")
	p2, a2 := sample(t, "hello-2.0.0.tar.gz")
	root := t.TempDir()
	r, _ := newRunner(t, Config{Root: root}, localContent{paths: map[string]string{a1.Sha256: p1, a2.Sha256: p2}})
	hello := &wire.Item{Id: "package/hello", Kind: "package", State: wire.State_STATE_PRESENT, Artifact: a1,
		Spec: &wire.Item_Package{Package: &wire.PackageSpec{Name: "hello", Version: "1.0.0"}}}
	patch := &wire.Item{Id: "patch/OUT-1", Kind: "patch", State: wire.State_STATE_PRESENT, Artifact: a2,
		Spec: &wire.Item_Patch{Patch: &wire.PatchSpec{Id: "OUT-1", Package: "hello", FixedVersion: "2.0.0", RollbackAllowed: true}}}
	expect(t, one(t, r, patch), wire.ItemReport_STATUS_NOT_APPLICABLE, false, "hello is not installed")
	expect(t, one(t, r, hello), wire.ItemReport_STATUS_COMPLIANT, true, "installed hello 1.0.0")
	// Not approved: reported missing, nothing installed.
	patch.ReportOnly = true
	expect(t, one(t, r, patch), wire.ItemReport_STATUS_PENDING, false,
		"not approved for this office, nothing changed: missing: hello 1.0.0 is installed, OUT-1 fixes it in 2.0.0")
	if mf, _ := os.ReadFile(filepath.Join(root, "opt", "hello", "bin", "hello")); !strings.Contains(string(mf), "hello 1.0.0") {
		t.Fatalf("a report-only patch changed the package: %q", mf)
	}
	patch.ReportOnly = false
	expect(t, one(t, r, patch), wire.ItemReport_STATUS_COMPLIANT, true, "installed patch OUT-1: hello 1.0.0 → 2.0.0")
	expect(t, one(t, r, patch), wire.ItemReport_STATUS_COMPLIANT, false, "installed: hello 2.0.0 has the fix")
	// Something puts 1.0.0 back (here: an item pinning it, earlier in the
	// same run); the patch, compliant at the last run, is repaired as drift.
	rep := r.Run(context.Background(), &wire.Policy{Revision: 2, Items: []*wire.Item{hello, patch}})
	expect(t, rep.GetItems()[0], wire.ItemReport_STATUS_COMPLIANT, true, "replaced hello 2.0.0 with 1.0.0")
	expect(t, rep.GetItems()[1], wire.ItemReport_STATUS_COMPLIANT, true, "repaired drift: missing: hello 1.0.0 is installed, OUT-1 fixes it in 2.0.0")
	bin := filepath.Join(root, "opt", "hello", "bin", "hello")
	if b, _ := os.ReadFile(bin); !strings.Contains(string(b), "hello 2.0.0") {
		t.Fatalf("after repair bin/hello = %q", b)
	}
	patch.State = wire.State_STATE_ABSENT
	expect(t, one(t, r, patch), wire.ItemReport_STATUS_COMPLIANT, true, "rolled back patch OUT-1: hello is 1.0.0 again")
	if b, _ := os.ReadFile(bin); !strings.Contains(string(b), "hello 1.0.0") {
		t.Fatalf("after rollback bin/hello = %q", b)
	}
}

// TestWindowInAnotherTimeZone: an item with a window in Berlin time is
// left pending outside it, nothing changed, and applied once the clock
// reaches it.
func TestWindowInAnotherTimeZone(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	clk := &clock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)} // 13:00 in Berlin
	var reboots []string
	r, _ := newRunner(t, Config{Root: root, Clock: clk.Now, Location: func() *time.Location { return berlin },
		Reboot: func(_ context.Context, _, reason string) error { reboots = append(reboots, reason); return nil }}, localContent{})
	item := &wire.Item{Id: "registry:x", Kind: "registry", State: wire.State_STATE_PRESENT, Window: "22:00-04:00", Reboot: RebootIfNeeded,
		Spec: &wire.Item_Registry{Registry: &wire.RegistrySpec{Path: "/etc/app.conf", Name: "level", Data: []string{"warn"}}}}
	expect(t, one(t, r, item), wire.ItemReport_STATUS_PENDING, false, "waiting for window 22:00-04:00 Europe/Berlin (opens in 9h0m0s)")
	if _, err := os.Stat(filepath.Join(root, "etc", "app.conf")); !os.IsNotExist(err) {
		t.Fatalf("something was written outside the window: %v", err)
	}
	clk.Set(time.Date(2026, 11, 25, 23, 30, 0, 0, time.UTC)) // 00:30 in Berlin, inside
	expect(t, one(t, r, item), wire.ItemReport_STATUS_COMPLIANT, true, "set level")
	if b, _ := os.ReadFile(filepath.Join(root, "etc", "app.conf")); string(b) != "level = warn\n" {
		t.Fatalf("inside the window: %q", b)
	}
	if len(reboots) != 0 {
		t.Fatalf("rebooted for an item that needs no reboot: %v", reboots)
	}
	// Compliant items stay compliant outside the window.
	clk.Set(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	expect(t, one(t, r, item), wire.ItemReport_STATUS_COMPLIANT, false, "is \"warn\"")
}

// TestMisbehavingPlugins: a plugin that hangs or crashes is killed, the
// runner carries on, the item is failed with the reason, and the next run
// retries with a fresh plugin. Ordinary failures are retried with backoff.
func TestMisbehavingPlugins(t *testing.T) {
	t.Run("hang", func(t *testing.T) {
		r, _ := newRunner(t, Config{CallTimeout: 2 * time.Second}, localContent{})
		item := &wire.Item{Id: "hang-once", Kind: "test", State: wire.State_STATE_PRESENT}
		start := time.Now()
		expect(t, one(t, r, item), wire.ItemReport_STATUS_FAILED, false, "timed out after 2s, plugin killed")
		if d := time.Since(start); d > 20*time.Second {
			t.Fatalf("a hung plugin held the run for %v", d)
		}
		expect(t, one(t, r, item), wire.ItemReport_STATUS_COMPLIANT, true, "applied hang-once")
	})
	t.Run("crash", func(t *testing.T) {
		r, _ := newRunner(t, Config{}, localContent{})
		item := &wire.Item{Id: "crash-once", Kind: "test", State: wire.State_STATE_PRESENT}
		other := &wire.Item{Id: "other", Kind: "test", State: wire.State_STATE_PRESENT}
		rep := r.Run(context.Background(), &wire.Policy{Revision: 1, Items: []*wire.Item{item, other}})
		expect(t, rep.GetItems()[0], wire.ItemReport_STATUS_FAILED, false, "plugin crashed")
		expect(t, rep.GetItems()[1], wire.ItemReport_STATUS_COMPLIANT, true, "applied other")
		expect(t, one(t, r, item), wire.ItemReport_STATUS_COMPLIANT, true, "applied crash-once")
	})
	t.Run("retries with backoff", func(t *testing.T) {
		r, reg := newRunner(t, Config{Retries: 2, RetryBase: 10 * time.Millisecond, RetryCap: 15 * time.Millisecond}, localContent{})
		item := &wire.Item{Id: "fail", Kind: "test", State: wire.State_STATE_PRESENT}
		expect(t, one(t, r, item), wire.ItemReport_STATUS_FAILED, false, "apply failed 3 times, last: plugin test: apply fail: item fail is refused on purpose")
		if n := counter(t, reg, "outpost_agent_apply_attempts_total", "test", "failed"); n != 3 {
			t.Fatalf("attempts = %v, want 3", n)
		}
	})
	t.Run("a refusal is not tried again", func(t *testing.T) {
		r, reg := newRunner(t, Config{Retries: 2, RetryBase: 10 * time.Millisecond, RetryCap: 15 * time.Millisecond}, localContent{})
		item := &wire.Item{Id: "refuse", Kind: "test", State: wire.State_STATE_PRESENT}
		expect(t, one(t, r, item), wire.ItemReport_STATUS_FAILED, false, "apply: plugin test: apply refuse: item refuse asks for what this plugin never does: not allowed here (not tried again: the plugin refuses the item as it stands)")
		if n := counter(t, reg, "outpost_agent_apply_attempts_total", "test", "refused"); n != 1 {
			t.Fatalf("attempts = %v, want 1", n)
		}
	})
	t.Run("missing plugin", func(t *testing.T) {
		r, _ := newRunner(t, Config{}, localContent{})
		item := &wire.Item{Id: "x", Kind: "nosuch", State: wire.State_STATE_PRESENT}
		expect(t, one(t, r, item), wire.ItemReport_STATUS_FAILED, false, `no plugin for kind "nosuch"`)
	})
}

func TestRebootPolicy(t *testing.T) {
	tests := []struct {
		policy     string
		wantReboot bool
		wantMsg    string
	}{
		{RebootNever, false, "not rebooting (reboot policy never)"},
		{"", false, "not rebooting (reboot policy never)"},
		{RebootNotify, false, "reboot policy notify-only"},
		{RebootIfNeeded, true, "rebooting now, inside the window"},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			var reboots int
			r, _ := newRunner(t, Config{Reboot: func(context.Context, string, string) error { reboots++; return nil }}, localContent{})
			item := &wire.Item{Id: "reboot-me", Kind: "test", State: wire.State_STATE_PRESENT, Reboot: tt.policy}
			ir := one(t, r, item)
			if !ir.GetRebootRequired() || !strings.Contains(ir.GetMessage(), tt.wantMsg) || (reboots == 1) != tt.wantReboot {
				t.Fatalf("report %v, reboots %d; want reboot=%v and %q", ir, reboots, tt.wantReboot, tt.wantMsg)
			}
		})
	}
}

// counter reads one sample from the registry: name and label values in
// the order the metric declares them.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i, lp := range m.GetLabel() {
				if i >= len(labels) || lp.GetValue() != labels[i] {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// Progress grows with each step of a run: an item begun, each plugin call
// made and answered.
func TestProgressGrowsWithEachStepOfARun(t *testing.T) {
	root := t.TempDir()
	r, _ := newRunner(t, Config{Root: root}, localContent{})
	item := &wire.Item{Id: "registry:swappiness", Kind: "registry", State: wire.State_STATE_PRESENT,
		Spec: &wire.Item_Registry{Registry: &wire.RegistrySpec{Path: "/etc/sysctl.d/99-outpost.conf", Name: "vm.swappiness", Type: "dword", Data: []string{"10"}}}}
	before := r.Progress()
	expect(t, one(t, r, item), wire.ItemReport_STATUS_COMPLIANT, true, "set vm.swappiness")
	// begun, scan asked and answered, apply asked and answered, ended
	if steps := r.Progress() - before; steps < 6 {
		t.Fatalf("a run that scanned and applied took %d steps", steps)
	}
}
