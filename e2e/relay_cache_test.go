package e2e

import (
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	tu "github.com/outposthq/outpost/pkg/testutil"
)

// gaugeValue is the value of a single-series gauge, or -1 if absent.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// A relay takes its office's signed policy over its QUIC link: it pins the
// artifacts the policy names and fetches them before any agent asks, and a
// newer policy moves the pins.
func TestRelayPinsAndPrestagesWhatThePolicyNames(t *testing.T) {
	m := tu.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(m))
	c.CreateOffice("lyon", nil)
	_, reg := startRelay(t, c, c.EnrollToken("lyon", "relay", 1))

	blobs := make([][]byte, 2)
	shas := make([]string, 2)
	for i := range blobs {
		blobs[i] = make([]byte, 300_000+i)
		rand.Read(blobs[i])
		shas[i] = c.Upload(fmt.Sprintf("a%d.bin", i), blobs[i])
	}
	c.Apply("lyon", fmt.Sprintf("items:\n  - kind: package\n    name: a\n    version: \"1\"\n    artifact: %s\n"+
		"  - kind: package\n    name: b\n    version: \"1\"\n    artifact: %s\n", shas[0], shas[1]))
	tu.Eventually(t, 60*time.Second, func() bool {
		return gaugeValue(t, reg, "outpost_relay_cache_pinned_objects") == 2 &&
			gaugeValue(t, reg, "outpost_relay_cache_objects") == 2
	}, "relay did not pin and pre-stage both artifacts: pinned %v, objects %v",
		gaugeValue(t, reg, "outpost_relay_cache_pinned_objects"), gaugeValue(t, reg, "outpost_relay_cache_objects"))
	if got := metricValue(t, reg, "outpost_relay_cache_upstream_bytes_total"); got != float64(len(blobs[0])+len(blobs[1])) {
		t.Errorf("upstream bytes %v, want %d", got, len(blobs[0])+len(blobs[1]))
	}

	c.Apply("lyon", fmt.Sprintf("items:\n  - kind: package\n    name: a\n    version: \"1\"\n    artifact: %s\n", shas[0]))
	tu.Eventually(t, 60*time.Second, func() bool {
		return gaugeValue(t, reg, "outpost_relay_cache_pinned_objects") == 1
	}, "relay did not follow the newer policy")
}
