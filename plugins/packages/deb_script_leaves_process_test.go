//go:build linux

package packages

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/proto"
)

// TestDebWhoseScriptLeavesAProcessRunningDoesNotHang: a maintainer script
// that starts a process in the background (a service started the old
// way, "daemon &") leaves it holding the output dpkg was given. The
// plugin read that output to its end, and so waited, after dpkg had
// exited, for as long as the process ran: the apply hung until the agent
// killed the plugin at its time limit (30 minutes), and the install, which
// had succeeded, was reported failed. It now reads what is left for a
// moment after dpkg exits, and dpkg's exit status decides.
func TestDebWhoseScriptLeavesAProcessRunningDoesNotHang(t *testing.T) {
	d := newDpkgSystem(t)
	d.withPrograms("/bin/sh", "/bin/sleep")
	deb := d.deb("outpost-bg", "1.0-1", map[string]string{"opt/outpost-bg/bg": "bg\n"}, map[string]string{
		"postinst": "#!/bin/sh\nsleep 3600 &\necho $! > /bg.pid\necho started the service\n",
	})
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(d.sys, "bg.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	m := New(logging.Discard(), WithDpkgDir(d.bin))
	type result struct {
		resp *proto.ApplyResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		r, err := m.Apply(context.Background(), &proto.ApplyRequest{Root: "/", Item: debPkgItem("outpost-bg", "1.0-1", wire.State_STATE_PRESENT), ArtifactPath: deb})
		done <- result{r, err}
	}()
	select {
	case r := <-done:
		if r.err != nil || r.resp.GetMessage() != "installed outpost-bg 1.0-1 with dpkg" {
			t.Fatalf("apply = %v, %v; want the install reported done", r.resp, r.err)
		}
	case <-time.After(2 * time.Minute):
		// Far beyond the moment the output is read for: the sleep holds it
		// for an hour.
		t.Fatal("apply still running two minutes after dpkg finished: it waits for the process the postinst left behind")
	}
	if got := d.version("outpost-bg"); got != "1.0-1" {
		t.Fatalf("dpkg has outpost-bg %q", got)
	}
}
