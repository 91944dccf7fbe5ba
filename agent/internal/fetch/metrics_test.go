package fetch

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/logging"
)

// Bytes are counted by source and office, so that an office's figures add
// up across its agents; a cached artifact counts nothing.
func TestFetchedBytesBySourceAndOffice(t *testing.T) {
	body := []byte(strings.Repeat("counted ", 5000))
	a := artifact(body)
	relay, _ := serve(t, body)
	direct, _ := serve(t, body)
	reg := prometheus.NewRegistry()
	f, err := New(t.TempDir(), presignFunc(func(context.Context, string) (string, error) { return direct.URL, nil }),
		&http.Client{Timeout: 10 * time.Second}, logging.Discard(), reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Get(context.Background(), a, Sources{Relays: []string{relay.URL}, Office: "berlin"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Get(context.Background(), a, Sources{Relays: []string{relay.URL}, Office: "berlin"}); err != nil {
		t.Fatal(err)
	}
	reg2 := prometheus.NewRegistry()
	f2, err := New(t.TempDir(), presignFunc(func(context.Context, string) (string, error) { return direct.URL, nil }),
		&http.Client{Timeout: 10 * time.Second}, logging.Discard(), reg2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f2.Get(context.Background(), a, Sources{Direct: true, Office: "paris"}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		reg            *prometheus.Registry
		source, office string
		want           float64
	}{
		{reg, "relay", "berlin", float64(len(body))},
		{reg, "file_server", "berlin", 0},
		{reg2, "file_server", "paris", float64(len(body))},
	} {
		if got := fetched(t, tt.reg, tt.source, tt.office); got != tt.want {
			t.Errorf("%s/%s = %v, want %v", tt.source, tt.office, got, tt.want)
		}
	}
}

func fetched(t *testing.T, reg *prometheus.Registry, source, office string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "outpost_agent_fetched_bytes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["source"] == source && labels["office"] == office {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
