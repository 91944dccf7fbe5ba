package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/freeport"
	"github.com/outposthq/outpost/pkg/testutil"
)

// agentView is an agent as the JSON output of the CLI shows it.
type agentView struct {
	ID, Hostname, Office, Home string
	Roaming                    bool
	LastSeen                   time.Time `json:"last_seen"`
}

// buildBinaries builds the outpost CLI, the agent and the package plugin
// into one directory, as 'make build' lays them out.
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	// Without symbols the binaries link and package faster.
	cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", dir+"/", "./coordinator/cmd/outpost", "./agent/cmd/outpost-agent", "./plugins/packages/cmd/outpost-plugin-package")
	cmd.Dir = testutil.RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// freeLoopback is a host:port on 127.0.0.1 that is free for TCP and UDP,
// as memberlist needs both, outside the ephemeral range (see freeport).
func freeLoopback(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Get("127.0.0.1", true, true)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// syncBuffer collects a subprocess's output for the failure message.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startInstalled runs the agent of an extracted package as a subprocess,
// with the paths of its agent.yaml moved into root and its gossip on a
// loopback port; env adds OUTPOST_AGENT_* settings.
func startInstalled(t *testing.T, root string, want map[string]string, env ...string) *syncBuffer {
	t.Helper()
	path := filepath.Join(root, "etc/outpost/agent.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("agent.yaml of the package: %v", err)
	}
	for k, v := range want {
		if cfg[k] != v {
			t.Fatalf("the package's agent.yaml has %s %v, want %v", k, cfg[k], v)
		}
	}
	// Only the paths and the gossip port change: what the installer
	// carries (coordinator, token, fingerprint) is used as built.
	cfg["data_dir"] = filepath.Join(root, cfg["data_dir"].(string))
	cfg["root"] = root
	cfg["plugins_dir"] = filepath.Join(root, cfg["plugins_dir"].(string))
	cfg["gossip_bind"] = freeLoopback(t)
	b, err = yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	cmd := exec.Command(filepath.Join(root, "usr/bin/outpost-agent"), "--config", path)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("the installed agent did not stop on SIGTERM:\n%s", out.String())
		}
		if t.Failed() {
			t.Logf("installed agent's output:\n%s", out.String())
		}
	})
	return out
}

// TestInstallerDebEnrols builds an office's installer with the real outpost
// binary against a real coordinator, installs the .deb into a temporary
// root with dpkg-deb and starts the agent from there: it enrols into the
// office over QUIC. A second computer, added to another office by name,
// enrols with the same installer into that office.
func TestInstallerDebEnrols(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb is not installed")
	}
	start := time.Now()
	var public string
	// Bind every address; the installer must carry the public one.
	c := coordinatortest.New(t, func(cfg *coordinator.Config) {
		_, port, _ := net.SplitHostPort(cfg.QUICAddr)
		cfg.QUICAddr = "0.0.0.0:" + port
		cfg.PublicAddress = "127.0.0.1:" + port
		public = cfg.PublicAddress
	})
	c.CreateOffice("berlin", nil)
	c.CreateOffice("hamburg", nil)
	c.MustDo("POST", "/v1/offices/hamburg/computers", map[string]any{"hostnames": []string{"pc-listed"}}, nil)
	bin := buildBinaries(t)
	t.Logf("binaries built %v after the start", time.Since(start).Round(time.Millisecond))

	out := filepath.Join(t.TempDir(), "installer")
	cmd := exec.Command(filepath.Join(bin, "outpost"), "installer", "build", "--office", "berlin", "--out", out, "--uses", "5", "--ttl", "1h", "--output", "json")
	cmd.Env = append(os.Environ(), "OUTPOST_SERVER="+c.URL, "OUTPOST_TOKEN="+c.Token)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("outpost installer build: %v\n%s", err, stderr.String())
	}
	t.Logf("installer built %v after the start", time.Since(start).Round(time.Millisecond))
	var res map[string]any
	if err := json.Unmarshal(stdout, &res); err != nil {
		t.Fatalf("installer build --output json: %v\n%s", err, stdout)
	}
	deb, _ := res["deb"].(string)
	if res["coordinator"] != public || deb == "" {
		t.Fatalf("installer build answered %s", stdout)
	}
	var tokens struct{ Tokens []struct{ ID, Role string } }
	c.MustDo("GET", "/v1/offices/berlin/tokens", nil, &tokens)
	if len(tokens.Tokens) != 1 || tokens.Tokens[0].ID != res["token_id"] || tokens.Tokens[0].Role != "agent" {
		t.Fatalf("tokens of berlin %+v, want the installer's %v", tokens, res["token_id"])
	}

	// An upgrade package: the same without a token.
	upgrade := filepath.Join(t.TempDir(), "upgrade")
	cmd = exec.Command(filepath.Join(bin, "outpost"), "installer", "build", "--office", "berlin", "--upgrade", "--out", upgrade)
	cmd.Env = append(os.Environ(), "OUTPOST_SERVER="+c.URL, "OUTPOST_TOKEN="+c.Token)
	stderr.Reset()
	cmd.Stderr = &stderr
	if stdout, err = cmd.Output(); err != nil {
		t.Fatalf("outpost installer build --upgrade: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(string(stdout), "upgrade package outpost-agent ") || !strings.Contains(string(stdout), "no enrolment token: for computers enrolled already") ||
		!strings.Contains(string(stdout), "roll it out: outpost artifact push "+upgrade+"/outpost-agent_") {
		t.Fatalf("installer build --upgrade said:\n%s", stdout)
	}
	if b, _ := os.ReadFile(filepath.Join(upgrade, "agent.yaml")); strings.Contains(string(b), "enroll_token:") || !strings.Contains(string(b), "ca_fingerprint: "+c.CA) {
		t.Fatalf("the upgrade's agent.yaml:\n%s", b)
	}
	c.MustDo("GET", "/v1/offices/berlin/tokens", nil, &tokens)
	if len(tokens.Tokens) != 1 {
		t.Fatalf("an upgrade package made a token: %+v", tokens)
	}

	want := map[string]string{"coordinator": public, "ca_fingerprint": c.CA, "data_dir": "/var/lib/outpost-agent", "root": "/", "plugins_dir": "/usr/lib/outpost/plugins"}
	install := func() string {
		root := t.TempDir()
		if b, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb -x: %v\n%s", err, b)
		}
		for _, p := range []string{"usr/bin/outpost-agent", "usr/lib/outpost/plugins/outpost-plugin-package", "lib/systemd/system/outpost-agent.service"} {
			if _, err := os.Stat(filepath.Join(root, p)); err != nil {
				t.Fatalf("the package lacks /%s: %v", p, err)
			}
		}
		return root
	}
	startInstalled(t, install(), want, "OUTPOST_AGENT_HOSTNAME=pc-installed")
	startInstalled(t, install(), want, "OUTPOST_AGENT_HOSTNAME=pc-listed")

	in := func(office, hostname string) func() bool {
		return func() bool {
			var list struct {
				Agents []struct{ Hostname, Office, Home string }
			}
			c.MustDo("GET", "/v1/agents?office="+office, nil, &list)
			for _, a := range list.Agents {
				if a.Hostname == hostname && a.Home == office {
					return true
				}
			}
			return false
		}
	}
	testutil.Eventually(t, 60*time.Second, in("berlin", "pc-installed"), "the installed agent did not enrol into berlin")
	t.Logf("enrolled %v after the start", time.Since(start).Round(time.Millisecond))
	testutil.Eventually(t, 60*time.Second, in("hamburg", "pc-listed"), "the agent added to hamburg by name did not enrol there")
	var computers struct {
		Computers []struct{ Hostname, Member string }
	}
	c.MustDo("GET", "/v1/offices/hamburg/computers", nil, &computers)
	if len(computers.Computers) != 1 || !strings.HasPrefix(computers.Computers[0].Member, "ag-") {
		t.Fatalf("hamburg's computers %+v: the enrolled member is not recorded", computers)
	}
	// The office and agent commands, through the real CLI binary against
	// the real coordinator with these agents on it.
	outpost := func(args ...string) (int, string, string) {
		cmd := exec.Command(filepath.Join(bin, "outpost"), args...)
		cmd.Env = append(os.Environ(), "OUTPOST_SERVER="+c.URL, "OUTPOST_TOKEN="+c.Token)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("outpost %v: %v", args, err)
		}
		return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
	}
	found := func(args ...string) map[string]agentView {
		code, stdout, stderr := outpost(append(args, "--output", "json")...)
		if code != 0 {
			t.Fatalf("outpost %v: exit %d: %s", args, code, stderr)
		}
		var list struct{ Agents []agentView }
		if err := json.Unmarshal([]byte(stdout), &list); err != nil {
			t.Fatalf("outpost %v: %v\n%s", args, err, stdout)
		}
		out := map[string]agentView{}
		for _, a := range list.Agents {
			out[a.Hostname] = a
		}
		return out
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return len(found("agent", "search", "PC-", "--state", "online")) == 2 },
		"agent search --state online does not find both connected agents")
	if got := found("agent", "search", "installed", "--office", "berlin"); len(got) != 1 || got["pc-installed"].ID == "" {
		t.Fatalf("agent search installed --office berlin: %v", got)
	}
	if code, _, stderr := outpost("office", "rm", "hamburg"); code != 1 || !strings.Contains(stderr, "pc-listed") || !strings.Contains(stderr, "--move-to") {
		t.Fatalf("office rm of an office with a computer: exit %d: %s", code, stderr)
	}
	if code, _, stderr := outpost("office", "rm", "hamburg", "--move-to", "rome"); code != 1 || !strings.Contains(stderr, "office rome") {
		t.Fatalf("office rm --move-to an unknown office: exit %d: %s", code, stderr)
	}
	removed := time.Now()
	if code, _, stderr := outpost("office", "rm", "hamburg", "--move-to", "berlin"); code != 0 {
		t.Fatalf("office rm --move-to berlin: exit %d: %s", code, stderr)
	}
	// The moved agent checks in at once, stays in berlin, and keeps
	// checking in there.
	testutil.Eventually(t, 30*time.Second, func() bool {
		a, ok := found("agent", "list", "--office", "berlin")["pc-listed"]
		return ok && a.Home == "berlin" && a.LastSeen.After(removed)
	}, "the agent of the removed office does not check in from berlin")

	// Moved by hand into an office whose range it is outside of: home is
	// paris, and it roams.
	if code, _, stderr := outpost("office", "add", "paris", "--subnet", "10.99.0.0/16", "--interval", "5s"); code != 0 {
		t.Fatalf("office add paris: %s", stderr)
	}
	id := found("agent", "search", "pc-installed")["pc-installed"].ID
	if code, stdout, stderr := outpost("agent", "move", id, "--office", "paris"); code != 0 || !strings.Contains(stdout, "home office paris") {
		t.Fatalf("agent move: exit %d: %s%s", code, stdout, stderr)
	}
	if code, _, stderr := outpost("agent", "move", id, "--office", "rome"); code != 1 || !strings.Contains(stderr, "office rome") {
		t.Fatalf("agent move to an unknown office: exit %d: %s", code, stderr)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		a, ok := found("agent", "search", "--state", "roaming")["pc-installed"]
		return ok && a.Office == "paris" && a.Home == "paris"
	}, "the agent moved to paris does not roam with home paris")

	// Both enrolled with the one multi-use token.
	var used struct{ Tokens []struct{ Used int } }
	c.MustDo("GET", "/v1/offices/berlin/tokens", nil, &used)
	if len(used.Tokens) != 1 || used.Tokens[0].Used != 2 {
		t.Fatalf("the installer's token was used %+v times, want 2", used)
	}
}
