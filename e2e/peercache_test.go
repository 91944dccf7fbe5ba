package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	tu "github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/relay"
)

// dataPackage is a .tar.gz package of about size bytes (random, so it does
// not compress) with one file, data.bin.
func dataPackage(t testing.TB, size int) []byte {
	t.Helper()
	body := make([]byte, size)
	rand.Read(body)
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.NoCompression)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: "data.bin", Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(body)
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// counterBy is the value of a counter's series whose label has value.
func counterBy(t testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && (value == "" || lp.GetValue() == value) {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// The office peer cache end to end: real agents in one office gossip
// (memberlist on 127.0.0.x), a real relay on a real MinIO. Four agents
// get a 20 MiB package at once: the relay sends it about once and the
// agents trade the rest; the coordinator shows the figures by source.
// Then a member whose copy went bad on disk is the only peer holding it:
// a newcomer drops it, reports it to the coordinator, and still installs
// the right bytes from the relay.
func TestOfficePeerCache(t *testing.T) {
	m := tu.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(m))
	// Agents report what they served to peers at their check-ins (through
	// the office's roll-up): a short interval lets the figures settle.
	c.CreateOffice("depot", map[string]any{"checkin_interval": "5s"})
	r, relayReg := startRelay(t, c, c.EnrollToken("depot", "relay", 1))
	c.MustDo("PATCH", "/v1/offices/depot", map[string]any{"mode": "relay", "relays": []string{relayURL(r.Addr())}}, nil)
	waitRelaysServing(t, c, "depot", r.Addr())
	token := c.EnrollToken("depot", "agent", 5)
	var agents []*testAgent
	for i := range 4 {
		agents = append(agents, startAgent(t, c, token, fmt.Sprintf("depot-%d", i), fmt.Sprintf("127.0.0.%d", 70+i)))
	}
	tu.Eventually(t, 30*time.Second, func() bool {
		for _, a := range agents {
			if len(a.a.GossipPeers()) < 3 {
				return false
			}
		}
		return true
	}, "the office's gossip did not form")

	pkg := dataPackage(t, 20<<20)
	sha := c.Upload("big-1.0.tar.gz", pkg)
	var shown struct {
		Chunks int `json:"chunks"`
	}
	c.MustDo("GET", "/v1/artifacts/"+sha, nil, &shown)
	if shown.Chunks != 6 {
		t.Fatalf("artifact has %d chunks, want 6 of 4 MiB", shown.Chunks)
	}
	c.Apply("depot", fmt.Sprintf("items:\n  - kind: package\n    name: big\n    version: \"1.0\"\n    artifact: %s\n", sha))
	tu.Eventually(t, 120*time.Second, func() bool {
		for _, a := range agents {
			if !exists(a.path("opt/big/data.bin")) {
				return false
			}
		}
		return true
	}, "not every agent installed the package")

	var peer, relay float64
	var each []string
	size := float64(len(pkg))
	for _, a := range agents {
		p := counterBy(t, a.reg, "outpost_agent_fetched_bytes_total", "source", "peer")
		r := counterBy(t, a.reg, "outpost_agent_fetched_bytes_total", "source", "relay")
		f := counterBy(t, a.reg, "outpost_agent_fetched_bytes_total", "source", "file_server")
		peer, relay = peer+p, relay+r
		each = append(each, fmt.Sprintf("%s %.2f/%.2f/%.2f", a.cfg.Hostname, p/size, r/size, f/size))
	}
	served := counterBy(t, relayReg, "outpost_relay_served_bytes_total", "source", "")
	t.Logf("agents fetched %.2f× the package from peers, %.2f× from the relay; the relay served %.2f× (peer/relay/file server: %v)", peer/size, relay/size, served/size, each)
	if peer < relay {
		t.Errorf("peers sent %.0f bytes, the relay %.0f: want most bytes from peers", peer, relay)
	}
	if served > 2*size {
		t.Errorf("relay served %.2f× the package to four agents, want ≤ 2×", served/size)
	}

	// The coordinator adds up what the agents report, per office.
	type sourceBytes struct {
		Agents    int     `json:"agents"`
		Peer      int64   `json:"peer"`
		Relay     int64   `json:"relay"`
		Served    int64   `json:"served_to_peers"`
		BadChunks int64   `json:"bad_chunks"`
		HitRatio  float64 `json:"hit_ratio"`
		PeerRatio float64 `json:"peer_ratio"`
	}
	var view struct {
		Fetched struct {
			Total   sourceBytes `json:"total"`
			Offices []struct {
				Office string `json:"office"`
			} `json:"offices"`
		} `json:"fetched"`
	}
	tu.Eventually(t, 30*time.Second, func() bool {
		c.MustDo("GET", "/v1/artifacts/"+sha, nil, &view)
		tot := view.Fetched.Total
		return tot.Agents == 4 && tot.Peer+tot.Relay >= 4*int64(len(pkg)) && tot.Served == tot.Peer
	}, "the coordinator did not get every agent's figures: %+v", view.Fetched.Total)
	if tot := view.Fetched.Total; tot.HitRatio != 1 || tot.PeerRatio < 0.5 || tot.Served != tot.Peer || view.Fetched.Offices[0].Office != "depot" {
		t.Errorf("figures %+v, offices %+v: want all bytes from inside the office, most from peers, served = fetched from peers", tot, view.Fetched.Offices)
	}

	// depot-0's copy goes bad on disk (a byte flipped in every chunk), and
	// it is the only peer left holding the package.
	final := filepath.Join(agents[0].cfg.DataDir, "content", sha)
	fh, err := os.OpenFile(final, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(1000); off < int64(len(pkg)); off += 4 << 20 {
		fh.WriteAt([]byte{pkg[off] ^ 0xff}, off)
	}
	fh.Close()
	for _, a := range agents[1:] {
		a.stop()
	}
	reportsBefore := c.Metric("outpost_coordinator_peer_reports_total")
	late := startAgent(t, c, token, "depot-late", "127.0.0.79")
	tu.Eventually(t, 120*time.Second, func() bool { return exists(late.path("opt/big/data.bin")) }, "the late agent did not install the package")
	got, err := os.ReadFile(late.path("opt/big/data.bin"))
	if err != nil || len(got) != 20<<20 {
		t.Fatalf("installed %d bytes (%v)", len(got), err)
	}
	if n := counterBy(t, late.reg, "outpost_agent_peer_bad_chunks_total", "office", "depot"); n < 1 {
		t.Errorf("bad chunks counted %v, want at least 1", n)
	}
	tu.Eventually(t, 30*time.Second, func() bool { return c.Metric("outpost_coordinator_peer_reports_total") > reportsBefore },
		"the late agent did not report the peer that served bad chunks")
	tu.Eventually(t, 30*time.Second, func() bool {
		c.MustDo("GET", "/v1/artifacts/"+sha, nil, &view)
		return view.Fetched.Total.BadChunks >= 1
	}, "artifact show does not count the bad chunk")
}

// An agent stopped at about 60% of a chunked download and started again
// (same disk) asks the relay again for less than one chunk.
func TestPeerCacheResumeAfterStop(t *testing.T) {
	m := tu.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(m))
	c.CreateOffice("annex", map[string]any{"checkin_interval": "1h"})
	// A slow relay, so that the stop lands mid-download.
	r, relayReg := startRelay(t, c, c.EnrollToken("annex", "relay", 1), func(cfg *relay.Config) { cfg.EgressBytesPerSec = 8_000_000 })
	c.MustDo("PATCH", "/v1/offices/annex", map[string]any{"mode": "relay", "relays": []string{relayURL(r.Addr())}}, nil)
	waitRelaysServing(t, c, "annex", r.Addr())
	a := startAgent(t, c, c.EnrollToken("annex", "agent", 1), "annex-0", "127.0.0.85")
	pkg := dataPackage(t, 24<<20)
	sha := c.Upload("resume.tar.gz", pkg)
	c.Apply("annex", fmt.Sprintf("items:\n  - kind: package\n    name: resume\n    version: \"1\"\n    artifact: %s\n", sha))
	size := float64(len(pkg))
	tu.Eventually(t, 60*time.Second, func() bool {
		return counterBy(t, a.reg, "outpost_agent_fetched_bytes_total", "source", "relay") >= 0.6*size
	}, "the download did not reach 60%")
	a.stop()
	atStop := counterBy(t, relayReg, "outpost_relay_served_bytes_total", "source", "")
	if atStop >= size {
		t.Fatalf("the relay had sent everything (%v bytes) before the stop", atStop)
	}
	a.start()
	tu.Eventually(t, 60*time.Second, func() bool { return exists(a.path("opt/resume/data.bin")) }, "the restarted agent did not install the package")
	// Before its first check-in the restarted agent does not know its
	// office's relays yet and may take the rest from the file server: what
	// crossed twice is everything any source sent, less the package.
	fromRelay := counterBy(t, relayReg, "outpost_relay_served_bytes_total", "source", "")
	fromFiles := counterBy(t, a.reg, "outpost_agent_fetched_bytes_total", "source", "file_server")
	again := fromRelay + fromFiles - size
	t.Logf("stopped after the relay sent %.0f%%; then the relay sent %.0f bytes and the file server %.0f; %.0f bytes crossed twice",
		atStop/size*100, fromRelay-atStop, fromFiles, again)
	if again > 4<<20 {
		t.Errorf("%.0f bytes crossed twice, want at most one 4 MiB chunk", again)
	}
}
