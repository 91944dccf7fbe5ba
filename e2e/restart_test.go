package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/freeport"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/member"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

var (
	coordOnce sync.Once
	coordPath string
	coordErr  error
)

// coordinatorBinary builds outpost-coordinator once per test run.
func coordinatorBinary(t testing.TB) string {
	t.Helper()
	coordOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outpost-e2e-coordinator-")
		if err != nil {
			coordErr = err
			return
		}
		coordPath = filepath.Join(dir, "outpost-coordinator")
		cmd := exec.Command("go", "build", "-o", coordPath, "./coordinator/cmd/outpost-coordinator")
		cmd.Dir = testutil.RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			coordErr = err
			t.Logf("%s", out)
		}
	})
	if coordErr != nil {
		t.Fatal(coordErr)
	}
	return coordPath
}

// A coordinator killed without a word (kill -9, a power cut) and started
// again resets the connections of the process before it (its QUIC reset
// key is kept in the data directory), so members are back at once instead
// of after the idle timeout: a minute without the coordinator for every
// member of the fleet.
func TestMembersReconnectAtOnceAfterACrash(t *testing.T) {
	bin := coordinatorBinary(t)
	dir := t.TempDir()
	httpAddr, err := freeport.Get("127.0.0.1", true, false)
	if err != nil {
		t.Fatal(err)
	}
	quicAddr, err := freeport.Get("127.0.0.1", false, true)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "--data-dir", dir, "--http-addr", httpAddr, "--https-addr", "", "--quic-addr", quicAddr)
		cmd.Stdout, cmd.Stderr = &logs, &logs
		dieWithParent(cmd)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 30*time.Second, func() bool {
			resp, err := http.Get("http://" + httpAddr + "/healthz")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil && resp.StatusCode == 200
		}, "the coordinator did not come up:\n%s", &logs)
		return cmd
	}
	coord := start()
	t.Cleanup(func() { _ = coord.Process.Kill(); _ = coord.Wait() })
	admin, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	fp, err := os.ReadFile(filepath.Join(dir, "ca.fingerprint"))
	if err != nil {
		t.Fatal(err)
	}
	api := func(path string, body any, out any) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", "http://"+httpAddr+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(admin)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode >= 300 {
			t.Fatalf("POST %s: %v %v", path, err, resp)
		}
		defer resp.Body.Close()
		if out != nil {
			_ = json.NewDecoder(resp.Body).Decode(out)
		}
	}
	api("/v1/offices", map[string]any{"name": "a"}, nil)
	var tok struct{ Token string }
	api("/v1/offices/a/tokens", map[string]any{"uses": 1}, &tok)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id, _, err := member.Enroll(ctx, quicAddr, strings.TrimSpace(string(fp)), tok.Token, "pc-1", wire.Role_ROLE_AGENT, key)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := member.NewClient(id, quicAddr, func(context.Context, *wire.Request) *wire.Response { return nil }, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	cl.SetBackoff(50*time.Millisecond, 200*time.Millisecond)
	go func() { _ = cl.Run(ctx) }()
	checkin := func() error {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		defer ccancel()
		// As an agent's check-in: a stateless reset answers only packets
		// larger than one (42 bytes), so a bare hostname would not do.
		_, err := cl.Call(cctx, &wire.Request{Body: &wire.Request_Checkin{Checkin: &wire.CheckinRequest{Hostname: "pc-1",
			Addresses: []string{"10.1.2.3", "fe80::1"}, Version: "0.0.0-test"}}})
		return err
	}
	if err := checkin(); err != nil {
		t.Fatal(err)
	}

	_ = coord.Process.Kill() // SIGKILL: no goodbye to anyone
	_ = coord.Wait()
	coord = start()
	restarted := time.Now()
	for checkin() != nil {
		if time.Since(restarted) > 20*time.Second {
			t.Fatalf("the member was still cut off 20 s after the coordinator came back (its idle timeout is a minute)")
		}
	}
	t.Logf("checked in again %v after the restart", time.Since(restarted).Round(time.Millisecond))
}
