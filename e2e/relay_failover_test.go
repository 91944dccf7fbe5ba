package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	tu "github.com/outposthq/outpost/pkg/testutil"
)

var (
	relayBinOnce sync.Once
	relayBin     string
	relayBinErr  error
)

// relayBinary builds outpost-relay once per test run, next to the plugins.
func relayBinary(t testing.TB) string {
	t.Helper()
	dir := plugins(t)
	relayBinOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", dir, "./relay/cmd/outpost-relay")
		cmd.Dir = tu.RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			relayBinErr = fmt.Errorf("build outpost-relay: %v\n%s", err, out)
		}
		relayBin = filepath.Join(dir, "outpost-relay")
	})
	if relayBinErr != nil {
		t.Fatal(relayBinErr)
	}
	return relayBin
}

// relayProc is a real outpost-relay process that a test can kill.
type relayProc struct {
	t    testing.TB
	cmd  *exec.Cmd
	addr string // host:port of its content server
	log  string
	done chan struct{}
}

// startRelayProc runs outpost-relay enrolled into the coordinator, serving
// on addr; extra is more YAML for its config.
func startRelayProc(t testing.TB, c *coordinatortest.Harness, token, addr, extra string) *relayProc {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf("coordinator: %s\nenroll_token: %s\nca_fingerprint: %s\ndata_dir: %s\nlisten: %s\nlog_level: debug\n%s",
		c.QUIC, token, c.CA, filepath.Join(dir, "data"), addr, extra)
	path := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "relay.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(relayBinary(t), "--config", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &relayProc{t: t, cmd: cmd, addr: addr, log: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(string(b), "\n")
			t.Logf("last lines of relay %s log:\n%s", addr, strings.Join(lines[max(0, len(lines)-30):], "\n"))
		}
	})
	return p
}

// kill ends the process at once, as a crash or a pulled plug would.
func (p *relayProc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// bigPackage is a valid package .tar.gz of about size bytes: hello's
// files and a blob of random (incompressible) data.
func bigPackage(t testing.TB, size int) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.NoCompression)
	tw := tar.NewWriter(gz)
	blob := make([]byte, size)
	rand.Read(blob)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{
		{"bin/hello", 0o755, []byte("#!/bin/sh\necho hello, world\n")},
		{"share/hello/blob.bin", 0o644, blob},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg, ModTime: time.Unix(1704067200, 0)}); err != nil {
			t.Fatal(err)
		}
		tw.Write(f.data)
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// counterSum adds a counter's values over the series whose labels include
// every given name=value pair.
func counterSum(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, want := range labels {
				if have[k] != want {
					continue next
				}
			}
			v += m.GetCounter().GetValue()
		}
	}
	return v
}

// An office with two relays: the first is killed (or hangs, as a box that
// loses power does) while an agent downloads a large artifact from it; the
// agent carries on with the second relay, resuming by range, so the bytes
// fetched twice are few, and installs.
func TestRelayFailoverMidDownloadResumesOnTheOtherRelay(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(*relayProc)
	}{
		{"killed", (*relayProc).kill},
		{"hung", func(p *relayProc) { p.cmd.Process.Signal(syscall.SIGSTOP) }},
	} {
		t.Run(tc.name, func(t *testing.T) { relayFailover(t, tc.stop) })
	}
}

func relayFailover(t *testing.T, stop func(*relayProc)) {
	m := tu.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(m))
	c.CreateOffice("oslo", nil)
	token := c.EnrollToken("oslo", "relay", 2)
	addr1, addr2 := freePort(t, "127.0.0.21"), freePort(t, "127.0.0.22")
	// The first relay sends slowly, so that the kill lands mid-download.
	r1 := startRelayProc(t, c, token, addr1, relayURLConfig(addr1)+"egress_bytes_per_sec: 3000000\n")
	startRelayProc(t, c, token, addr2, relayURLConfig(addr2))
	c.MustDo("PATCH", "/v1/offices/oslo", map[string]any{"mode": "relay", "relays": []string{relayURL(addr1), relayURL(addr2)}}, nil)
	waitRelaysServing(t, c, "oslo", addr1, addr2)

	a := startAgent(t, c, c.EnrollToken("oslo", "agent", 1), "osl-1", "127.0.0.23")
	pkg := bigPackage(t, 24<<20)
	sha := c.Upload("big-1.0.0.tar.gz", pkg)
	size := int64(len(pkg))
	rev := c.Apply("oslo", packageYAML(sha, "present"))

	var killedAt int64
	tu.Eventually(t, 60*time.Second, func() bool {
		got := int64(counterSum(t, a.reg, "outpost_agent_fetched_bytes_total", map[string]string{"source": "relay"}))
		if got >= size/4 {
			stop(r1)
			killedAt = got
			return true
		}
		return false
	}, "the agent did not get a quarter of the artifact from the first relay")
	if killedAt >= size {
		t.Fatalf("the download was over (%d of %d bytes) before the relay was killed", killedAt, size)
	}
	tu.Eventually(t, 90*time.Second, compliantAt(c, "oslo", 1, rev), "agent not compliant after the relay failover: %+v", c.Agents("oslo"))
	if !exists(a.path("opt/hello/share/hello/blob.bin")) {
		t.Fatal("package not installed")
	}
	fromRelays := counterSum(t, a.reg, "outpost_agent_fetched_bytes_total", map[string]string{"source": "relay"})
	fromFiles := counterSum(t, a.reg, "outpost_agent_fetched_bytes_total", map[string]string{"source": "file_server"})
	// Resumed by range: what was fetched before the kill is not fetched
	// again (the slack is what was in flight when the first relay died).
	if refetched := fromRelays - float64(size); refetched < 0 || refetched > 1<<20 {
		t.Fatalf("agent fetched %v bytes from relays for a %d-byte artifact (killed at %d): %v bytes again", fromRelays, size, killedAt, refetched)
	}
	if fromFiles != 0 {
		t.Fatalf("agent went to the file server for %v bytes; the second relay should have served", fromFiles)
	}
	t.Logf("artifact %d bytes; first relay stopped at %d; fetched from relays %v", size, killedAt, fromRelays)
}

// relayURL is the base URL agents fetch from a relay at addr: HTTPS, with
// a serving certificate from the coordinator's CA.
func relayURL(addr string) string { return "https://" + addr }

// relayURLConfig is the relay's config naming that URL.
func relayURLConfig(addr string) string { return "advertise_url: " + relayURL(addr) + "\n" }

// relayClient trusts what agents trust: the coordinator's CA.
func relayClient(c *coordinatortest.Harness) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: c.CAPool()}
	return &http.Client{Transport: t, Timeout: 10 * time.Second}
}

// waitRelaysServing waits until each relay answers over HTTPS with a
// certificate from the coordinator's CA valid for its address.
func waitRelaysServing(t testing.TB, c *coordinatortest.Harness, office string, addrs ...string) {
	t.Helper()
	hc := relayClient(c)
	for _, addr := range addrs {
		last := &errBox{}
		tu.Eventually(t, 60*time.Second, func() bool {
			resp, err := hc.Get(relayURL(addr) + "/healthz")
			if last.err = err; err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}, "relay %s of office %s did not serve HTTPS: %v", addr, office, last)
	}
}

// errBox shows the last error of a wait in its failure message.
type errBox struct{ err error }

func (b *errBox) String() string { return fmt.Sprint(b.err) }

// Plain HTTP stays possible as an explicit opt-in on both ends: the office
// allows it and the relay serves it; agents then fetch from it.
func TestPlainHTTPRelayWhereTheOfficeAllowsIt(t *testing.T) {
	m := tu.StartMinIO(t)
	c := coordinatortest.New(t, coordinatortest.WithMinIO(m))
	c.CreateOffice("lab", nil)
	addr := freePort(t, "127.0.0.41")
	url := "http://" + addr
	startRelayProc(t, c, c.EnrollToken("lab", "relay", 1), addr, "advertise_url: "+url+"\nplain_http: true\n")
	if code, msg := c.Do("PATCH", "/v1/offices/lab", map[string]any{"mode": "relay", "relays": []string{url}}, nil); code != 400 || !strings.Contains(msg, "plain HTTP") {
		t.Fatalf("a plain relay in an office that does not allow it: %d %s", code, msg)
	}
	c.MustDo("PATCH", "/v1/offices/lab", map[string]any{"mode": "relay", "relays": []string{url}, "allow_plain_http": true}, nil)
	tu.Eventually(t, 30*time.Second, func() bool {
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "plain relay did not serve")
	a := startAgent(t, c, c.EnrollToken("lab", "agent", 1), "lab-1", "127.0.0.42")
	pkg := bigPackage(t, 1<<20)
	rev := c.Apply("lab", packageYAML(c.Upload("big-1.0.0.tar.gz", pkg), "present"))
	tu.Eventually(t, 60*time.Second, compliantAt(c, "lab", 1, rev), "agent not compliant: %+v", c.Agents("lab"))
	if n := counterSum(t, a.reg, "outpost_agent_fetched_bytes_total", map[string]string{"source": "relay"}); n != float64(len(pkg)) {
		t.Fatalf("fetched %v bytes from the plain relay, want %d", n, len(pkg))
	}
}
