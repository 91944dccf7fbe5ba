//go:build unix

package packages

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/proto"
)

// TestHookThatLeavesAProcessRunning: a hook that exits 0 but leaves a
// process of its own running ("something &") was reported failed after
// two seconds ("WaitDelay expired before I/O complete": the process held
// the hook's output), so the post-install hook ran again at every apply
// and left one more process behind each time, running as root for ever.
// What a hook leaves in its process group is now killed when the hook
// exits, and the hook's exit status decides; a process the hook detached
// into a session of its own (setsid, as a service is started) is not the
// hook's to kill, and stays.
func TestHookThatLeavesAProcessRunning(t *testing.T) {
	for _, hook := range []string{HookPreInstall, HookPostInstall} {
		t.Run(hook, func(t *testing.T) {
			e := newEnv(t)
			script := "#!/bin/sh\nsleep 3600 &\necho $! > \"$OUTPOST_ROOT/left.pid\"\necho started\n"
			p, art := e.artifact(targz(t, exe("bin/tool", "#!/bin/sh\n"), exe(hook, script)))
			item := pkgItem("tool", "1.0", "", wire.State_STATE_PRESENT, art)
			pid := 0
			t.Cleanup(func() {
				if pid > 0 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			})
			resp, err := e.m.Apply(context.Background(), &proto.ApplyRequest{Root: e.root, Item: item, ArtifactPath: p})
			pid = readPid(t, filepath.Join(e.root, "left.pid"))
			if err != nil || resp.GetMessage() != "installed tool 1.0 (2 files)" {
				t.Fatalf("apply = %v, %v; want the install done: the hook exited 0", resp, err)
			}
			testutil.Eventually(t, 30*time.Second, func() bool { return !alive(pid) },
				"the process %d the hook left running is still there after the hook exited", pid)
			if st := e.scan(item); !st.GetCompliant() {
				t.Fatalf("scan = %v", st)
			}
		})
	}
	t.Run("detached", func(t *testing.T) {
		if _, err := os.Stat("/usr/bin/setsid"); err != nil {
			t.Skip("no setsid")
		}
		e := newEnv(t)
		// As a service is started (start-stop-daemon --background): the
		// hook exits once the service is in a session of its own.
		script := "#!/bin/sh\n/usr/bin/setsid /bin/sh -c 'echo $$ > \"$OUTPOST_ROOT/left.pid.tmp\"; mv \"$OUTPOST_ROOT/left.pid.tmp\" \"$OUTPOST_ROOT/left.pid\"; exec sleep 3600' </dev/null >/dev/null 2>&1 &\n" +
			"while [ ! -e \"$OUTPOST_ROOT/left.pid\" ]; do sleep 0.05; done\n"
		pid := 0
		t.Cleanup(func() {
			if pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		})
		_, err := e.install("tool", "1.0", exe("bin/tool", "#!/bin/sh\n"), exe(HookPostInstall, script))
		pid = readPid(t, filepath.Join(e.root, "left.pid"))
		if err != nil {
			t.Fatal(err)
		}
		if !alive(pid) || sessionOf(pid) != pid {
			t.Fatal("a process the hook detached into a session of its own was killed")
		}
	})
}

func readPid(t *testing.T, p string) int {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("the hook did not run: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// alive reports whether pid is a process that has not exited (a zombie
// nobody reaped has).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // no /proc here: kill(0) said it exists
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

// sessionOf returns the session id of pid, or -1.
func sessionOf(pid int) int {
	sid, err := unix.Getsid(pid)
	if err != nil {
		return -1
	}
	return sid
}
