package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/testutil"
)

var (
	managePluginsOnce sync.Once
	managePluginsErr  error
)

// managePlugins adds the registry and patch plugins to the shared plugin
// directory.
func managePlugins(t *testing.T) {
	t.Helper()
	dir := plugins(t)
	managePluginsOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", dir, "./plugins/registry/cmd/outpost-plugin-registry", "./plugins/patch/cmd/outpost-plugin-patch")
		cmd.Dir = testutil.RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			managePluginsErr = fmt.Errorf("build plugins: %v\n%s", err, out)
		}
	})
	if managePluginsErr != nil {
		t.Fatal(managePluginsErr)
	}
}

// item returns the agent's last reported status of one item.
func item(c *coordinatortest.Harness, office, host, id string) (status, message string) {
	for _, a := range c.Agents(office) {
		if a.Hostname != host {
			continue
		}
		for _, it := range a.Items {
			if it.ID == id {
				return it.Status, it.Message
			}
		}
	}
	return "", ""
}

// ranWith reports whether any run the coordinator kept for the agent has
// the item with a message containing msg.
func ranWith(c *coordinatortest.Harness, agentID, itemID, msg string) bool {
	var runs struct {
		Runs []struct {
			Items []struct{ ID, Message string }
		}
	}
	c.MustDo("GET", "/v1/agents/"+agentID+"/runs", nil, &runs)
	for _, r := range runs.Runs {
		for _, it := range r.Items {
			if it.ID == itemID && strings.Contains(it.Message, msg) {
				return true
			}
		}
	}
	return false
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

// TestSettingsAndPatchesEndToEnd drives a managed setting and a patch
// through a real coordinator and agent: set, drift repaired and reported,
// a patch held back by its window in the office's time zone and installed
// once the window is open, missing patches and run history in the API, and
// the setting's original restored on removal.
func TestSettingsAndPatchesEndToEnd(t *testing.T) {
	managePlugins(t)
	minio := testutil.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(minio))
	c.CreateOffice("tokyo", map[string]any{"mode": "direct", "time_zone": "Asia/Tokyo"})
	token := c.EnrollToken("tokyo", "agent", 1)
	a := startAgent(t, c, token, "pc-tokyo", "127.0.0.20")

	conf := a.path("etc/sysctl.d/99-outpost.conf")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("# local tuning\nvm.swappiness = 60\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	registryItem := func(state string) string {
		return "  - kind: registry\n    path: /etc/sysctl.d/99-outpost.conf\n    name: vm.swappiness\n    type: dword\n    value: 10\n    state: " + state + "\n"
	}
	const settingID = "registry:/etc/sysctl.d/99-outpost.conf#vm.swappiness"

	// Set, with a package the patch will fix.
	pkg1, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "testdata/packages/hello-1.0.0.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	sha1 := c.Upload("hello-1.0.0.tar.gz", pkg1)
	rev := c.Apply("tokyo", "items:\n"+registryItem("present")+
		fmt.Sprintf("  - kind: package\n    name: hello\n    version: \"1.0.0\"\n    artifact: %s\n", sha1))
	testutil.Eventually(t, 60*time.Second, compliantAt(c, "tokyo", 1, rev), "agent compliant at revision %d: %+v", rev, c.Agents("tokyo"))
	if got := readFile(conf); got != "# local tuning\nvm.swappiness = 10\n" {
		t.Fatalf("setting not applied: %q", got)
	}

	// Drift: a hand edit is repaired within an interval and reported.
	if err := os.WriteFile(conf, []byte("# local tuning\nvm.swappiness = 99\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The report saying so may be replaced by the next run's within an
	// interval; the coordinator's run history keeps it.
	agentID := c.Agents("tokyo")[0].ID
	testutil.Eventually(t, 30*time.Second, func() bool {
		return readFile(conf) == "# local tuning\nvm.swappiness = 10\n" && ranWith(c, agentID, settingID, "repaired drift: vm.swappiness in /etc/sysctl.d/99-outpost.conf is \"99\"")
	}, "drift not repaired and reported: %q, %+v", readFile(conf), c.Agents("tokyo"))

	// The package item leaves the policy (hello stays installed); a patch
	// for it is imported and approved with a window that is closed now in
	// Tokyo.
	c.Apply("tokyo", "items:\n"+registryItem("present"))
	pkg2, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "testdata/packages/hello-2.0.0.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	sha2 := c.Upload("hello-2.0.0.tar.gz", pkg2)
	feed := fmt.Sprintf("patches:\n  - {id: OUT-1, title: hello fix, severity: high, package: hello, fixed_version: 2.0.0, artifact: %s, rollback_allowed: true}\n", sha2)
	if code, msg := c.Do("POST", "/v1/patches/import", "patches:\n  - {id: BAD, severity: high, package: hello, fixed_version: '2', artifact: "+sha2+", supersedes: [BAD]}\n", nil); code != 400 || !strings.Contains(msg, "supersedes itself") {
		t.Fatalf("bad feed: %d %s", code, msg)
	}
	c.MustDo("POST", "/v1/patches/import", feed, nil)
	// Imported but not approved: the host scans and reports it missing.
	testutil.Eventually(t, 30*time.Second, func() bool {
		st, msg := item(c, "tokyo", "pc-tokyo", "patch/OUT-1")
		return st == "pending" && strings.Contains(msg, "not approved for this office, nothing changed: missing: hello 1.0.0 is installed")
	}, "unapproved patch not reported missing: %+v", c.Agents("tokyo"))
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().In(tokyo)
	closed := fmt.Sprintf("%s-%s", now.Add(2*time.Hour).Format("15:04"), now.Add(3*time.Hour).Format("15:04"))
	c.MustDo("POST", "/v1/patches/OUT-1/approve", map[string]any{"office": "tokyo", "window": closed}, nil)
	testutil.Eventually(t, 30*time.Second, func() bool {
		st, msg := item(c, "tokyo", "pc-tokyo", "patch/OUT-1")
		return st == "pending" && strings.Contains(msg, "waiting for window "+closed+" Asia/Tokyo") && strings.Contains(msg, "missing: hello 1.0.0")
	}, "patch not held back by its window: %+v", c.Agents("tokyo"))
	if b := readFile(a.path("opt/hello/bin/hello")); !strings.Contains(b, "hello 1.0.0") {
		t.Fatalf("installed outside its window: %q", b)
	}
	var missing struct {
		Hosts []struct {
			Hostname string
			Missing  []struct{ Patch, Status string }
		}
	}
	c.MustDo("GET", "/v1/patches-missing?office=tokyo", nil, &missing)
	if len(missing.Hosts) != 1 || len(missing.Hosts[0].Missing) != 1 || missing.Hosts[0].Missing[0].Patch != "OUT-1" {
		t.Fatalf("missing patches = %+v", missing)
	}

	// The window opens (approved again with one that holds now): installed.
	c.MustDo("DELETE", "/v1/patches/OUT-1/approve?office=tokyo", nil, nil)
	open := fmt.Sprintf("%s-%s", now.Add(-time.Hour).Format("15:04"), now.Add(2*time.Hour).Format("15:04"))
	c.MustDo("POST", "/v1/patches/OUT-1/approve", map[string]any{"office": "tokyo", "window": open}, nil)
	testutil.Eventually(t, 60*time.Second, func() bool {
		st, _ := item(c, "tokyo", "pc-tokyo", "patch/OUT-1")
		return st == "compliant" && strings.Contains(readFile(a.path("opt/hello/bin/hello")), "hello 2.0.0")
	}, "patch not installed inside its window: %+v", c.Agents("tokyo"))
	c.MustDo("GET", "/v1/patches-missing?office=tokyo", nil, &missing)
	if len(missing.Hosts[0].Missing) != 0 {
		t.Fatalf("still missing after install: %+v", missing)
	}

	// Removal restores the original setting.
	rev = c.Apply("tokyo", "items:\n"+registryItem("absent"))
	testutil.Eventually(t, 60*time.Second, compliantAt(c, "tokyo", 1, rev), "agent compliant at revision %d: %+v", rev, c.Agents("tokyo"))
	if got := readFile(conf); got != "# local tuning\nvm.swappiness = 60\n" {
		t.Fatalf("original not restored: %q", got)
	}

	// The coordinator kept the agent's runs.
	var runs struct {
		Runs []struct{ Revision uint64 }
	}
	c.MustDo("GET", "/v1/agents/"+agentID+"/runs", nil, &runs)
	if len(runs.Runs) < 4 || runs.Runs[0].Revision != rev {
		t.Fatalf("runs = %+v; want several, newest at revision %d", runs, rev)
	}
}
