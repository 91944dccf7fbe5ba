package e2e

import (
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	tu "github.com/outposthq/outpost/pkg/testutil"
)

// officeStaging is the staging part of the API's office view.
type officeStaging struct {
	Mode    string `json:"mode"`
	Staging *struct {
		Revision    uint64 `json:"revision"`
		Released    uint64 `json:"released_revision"`
		Artifacts   int    `json:"artifacts"`
		Staged      int    `json:"staged"`
		Bytes       int64  `json:"bytes"`
		StagedBytes int64  `json:"staged_bytes"`
		Complete    bool   `json:"complete"`
	} `json:"staging"`
}

// A distribution-server office: its relay stages everything the policy
// names, over a slow WAN leg, before any of the office's agents hears of
// the revision; the office's view shows the progress; once staged, the
// agents install from the distribution server.
func TestDistributionOfficeInstallsOnlyAfterStaging(t *testing.T) {
	m := tu.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(m))
	addr := freePort(t, "127.0.0.31")
	c.CreateOffice("lyon", map[string]any{"mode": "distribution", "distribution_server": addr})
	// The WAN leg is slow: staging takes seconds, long enough to watch.
	startRelayProc(t, c, c.EnrollToken("lyon", "relay", 1), addr, relayURLConfig(addr)+"upstream_bytes_per_sec: 1500000\n")
	waitRelaysServing(t, c, "lyon", addr)
	token := c.EnrollToken("lyon", "agent", 2)
	agents := []*testAgent{
		startAgent(t, c, token, "lyo-1", "127.0.0.32"),
		startAgent(t, c, token, "lyo-2", "127.0.0.33"),
	}

	pkg := bigPackage(t, 9<<20)
	rev := c.Apply("lyon", packageYAML(c.Upload("big-1.0.0.tar.gz", pkg), "present"))
	sawProgress := false
	tu.Eventually(t, 90*time.Second, func() bool {
		var v officeStaging
		c.MustDo("GET", "/v1/offices/lyon", nil, &v)
		st := v.Staging
		if st == nil {
			t.Fatalf("office view has no staging: %+v", v)
		}
		told := 0
		for _, a := range c.Agents("lyon") {
			if a.Role == "agent" && a.Revision >= rev {
				told++
			}
		}
		for _, a := range agents {
			if exists(a.path("opt/hello/share/hello/blob.bin")) && !st.Complete {
				t.Fatalf("%s installed before the distribution server staged the revision: %+v", a.cfg.Hostname, *st)
			}
		}
		if told > 0 && (st.Released < rev || !st.Complete) {
			t.Fatalf("%d agents were told of revision %d before it was staged: %+v", told, rev, *st)
		}
		if !st.Complete && st.Revision == rev && st.Artifacts == 1 && st.Staged == 0 && st.Bytes == int64(len(pkg)) && st.Released < rev {
			sawProgress = true
		}
		return compliantAt(c, "lyon", 2, rev)()
	}, "agents not compliant after staging: %+v", c.Agents("lyon"))
	if !sawProgress {
		t.Error("the office view never showed the revision being staged (0 of 1 artifacts, not released)")
	}
	var v officeStaging
	c.MustDo("GET", "/v1/offices/lyon", nil, &v)
	if st := v.Staging; st == nil || !st.Complete || st.Released != rev || st.Staged != 1 || st.StagedBytes != int64(len(pkg)) {
		t.Fatalf("after staging: %+v", st)
	}
	for _, a := range agents {
		if !exists(a.path("opt/hello/share/hello/blob.bin")) {
			t.Fatalf("%s: package not installed", a.cfg.Hostname)
		}
		// Inside the office: from the distribution server, or from a peer
		// that has it (the office peer cache); never the file server.
		relay := counterSum(t, a.reg, "outpost_agent_fetched_bytes_total", map[string]string{"source": "relay"})
		peer := counterSum(t, a.reg, "outpost_agent_fetched_bytes_total", map[string]string{"source": "peer"})
		files := counterSum(t, a.reg, "outpost_agent_fetched_bytes_total", map[string]string{"source": "file_server"})
		if relay+peer < float64(len(pkg)) || files != 0 {
			t.Errorf("%s fetched %v bytes from the distribution server, %v from peers and %v from the file server; want the %d bytes from inside the office", a.cfg.Hostname, relay, peer, files, len(pkg))
		}
	}
}
