// Package e2e runs Outpost end to end on real parts: a real MinIO, the
// coordinator over real QUIC on loopback, the relay, agents with their
// gossip on 127.0.0.x, and the package plugin as a real subprocess.
package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/testutil"
)

func packageYAML(sha, state string) string {
	return fmt.Sprintf("items:\n  - kind: package\n    name: hello\n    version: \"1.0.0\"\n    artifact: %s\n    state: %s\n", sha, state)
}

func compliantAt(c *coordinatortest.Harness, office string, n int, rev uint64) func() bool {
	return func() bool {
		ok := 0
		for _, a := range c.Agents(office) {
			if a.Role == "agent" && a.Compliant && a.Revision == rev {
				ok++
			}
		}
		return ok >= n
	}
}

func TestDirectOfficeInstallRemoveCatchUpAndRestart(t *testing.T) {
	minio := testutil.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(minio))
	c.CreateOffice("hq", map[string]any{"mode": "direct"})
	token := c.EnrollToken("hq", "agent", 3)
	var agents []*testAgent
	for i := range 3 {
		agents = append(agents, startAgent(t, c, token, fmt.Sprintf("pc-%d", i+1), fmt.Sprintf("127.0.0.%d", i+2)))
	}
	pkg, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "testdata/packages/hello-1.0.0.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	sha := c.Upload("hello-1.0.0.tar.gz", pkg)
	rev := c.Apply("hq", packageYAML(sha, "present"))
	testutil.Eventually(t, 60*time.Second, compliantAt(c, "hq", 3, rev), "3 agents compliant at revision %d: %+v", rev, c.Agents("hq"))
	for _, a := range agents {
		if !exists(a.path("opt/hello/bin/hello")) {
			t.Fatalf("%s: package not in its root", a.cfg.Hostname)
		}
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return len(agents[0].a.GossipPeers()) == 2 }, "office gossip did not form")

	// One agent goes away; the coordinator restarts; the package is removed.
	agents[2].stop()
	c.Restart()
	rev = c.Apply("hq", packageYAML(sha, "absent"))
	testutil.Eventually(t, 60*time.Second, compliantAt(c, "hq", 2, rev), "2 agents compliant at revision %d after a coordinator restart", rev)
	for _, a := range agents[:2] {
		if exists(a.path("opt/hello/bin/hello")) {
			t.Fatalf("%s: package still in its root", a.cfg.Hostname)
		}
	}
	if !exists(agents[2].path("opt/hello/bin/hello")) {
		t.Fatal("the stopped agent changed")
	}
	// The agent that was offline catches up when it returns.
	agents[2].start()
	testutil.Eventually(t, 60*time.Second, compliantAt(c, "hq", 3, rev), "the returning agent did not catch up")
	if exists(agents[2].path("opt/hello/bin/hello")) {
		t.Fatal("returning agent: package still in its root")
	}
}

func TestAgentEnforcesLastPolicyWhileCoordinatorIsDown(t *testing.T) {
	minio := testutil.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(minio))
	c.CreateOffice("roam", nil)
	a := startAgent(t, c, c.EnrollToken("roam", "agent", 1), "laptop", "127.0.0.20")
	pkg, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "testdata/packages/hello-1.0.0.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	rev := c.Apply("roam", packageYAML(c.Upload("hello-1.0.0.tar.gz", pkg), "present"))
	testutil.Eventually(t, 60*time.Second, compliantAt(c, "roam", 1, rev), "agent compliant")

	// The coordinator goes away; the agent restarts; someone deletes the
	// package by hand. The agent repairs it from its last accepted policy
	// and its own content cache, with no coordinator to ask.
	c.Stop()
	a.stop()
	if err := os.RemoveAll(a.path("opt/hello")); err != nil {
		t.Fatal(err)
	}
	a.start()
	if a.a.Revision() != rev {
		t.Fatalf("after restart the agent holds revision %d, want %d", a.a.Revision(), rev)
	}
	testutil.Eventually(t, 60*time.Second, func() bool { return exists(a.path("opt/hello/bin/hello")) },
		"the agent did not repair the package while the coordinator was down")
}
