package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/agent"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	tu "github.com/outposthq/outpost/pkg/testutil"
)

// An agent with metrics_addr serves its metrics at /metrics, and nothing
// else there.
func TestAgentMetricsListener(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("berlin", nil)
	addr := freePort(t, "127.0.0.1")
	startAgentWith(t, c, c.EnrollToken("berlin", "agent", 1), "pc-1", "127.0.0.40", t.TempDir(),
		func(cfg *agent.Config) { cfg.MetricsAddr = addr })
	get := func(path string) (int, string) {
		res, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	var body string
	tu.Eventually(t, 20*time.Second, func() bool {
		var code int
		code, body = get("/metrics")
		return code == 200 && strings.Contains(body, `outpost_agent_checkins_total{result="ok"}`)
	}, "no check-in counted at /metrics: %.300s", body)
	if code, _ := get("/"); code != http.StatusNotFound {
		t.Errorf("GET / = %d, want 404", code)
	}
}
