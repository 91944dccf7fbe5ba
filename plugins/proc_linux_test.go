package plugins

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/plugintest"
	"github.com/outposthq/outpost/plugins/proto"
)

// hostHelperEnv, set in the environment of this test binary run again,
// makes TestHostHelperProcess act as an agent: it opens the plugin binary
// named by the variable, prints the plugin's pid and waits to be killed.
const hostHelperEnv = "OUTPOST_PLUGINS_TEST_HOST_PLUGIN"

func TestHostHelperProcess(t *testing.T) {
	bin := os.Getenv(hostHelperEnv)
	if bin == "" {
		t.Skip("helper process for TestPluginDiesWithHost")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Open(ctx, bin, logging.Discard())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("plugin pid %d\n", c.proc.cmd.Process.Pid)
	select {} // until killed
}

// alive reports whether pid is a process that has not exited: a zombie
// (exited, not yet reaped by whoever inherited it) counts as dead.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// TestPluginDiesWithHost: an agent killed with SIGKILL leaves no plugin
// running behind it. The agent here is this test binary run again, which
// starts the plugin exactly as the agent does (Open).
func TestPluginDiesWithHost(t *testing.T) {
	bin := plugintest.Build(t, "github.com/outposthq/outpost/plugins/internal/testplugin")
	host := exec.Command(os.Args[0], "-test.run=^TestHostHelperProcess$")
	host.Env = append(os.Environ(), hostHelperEnv+"="+bin)
	host.Stderr = os.Stderr
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := false
	defer func() {
		if !reaped {
			_ = host.Process.Kill()
			_ = host.Wait()
		}
	}()
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			if strings.HasPrefix(s.Text(), "plugin pid ") {
				line <- s.Text()
				return
			}
		}
		close(line)
	}()
	var pid int
	select {
	case l, ok := <-line:
		if !ok {
			t.Fatal("the host exited without starting the plugin")
		}
		pid, err = strconv.Atoi(strings.TrimPrefix(l, "plugin pid "))
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the host did not start the plugin")
	}
	// If it survives, it is this test's to end: the plugin is in a process
	// group of its own.
	defer func() {
		if alive(pid) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}()
	if !alive(pid) {
		t.Fatalf("plugin %d is not running", pid)
	}

	if err := host.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = host.Wait()
	reaped = true
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("plugin %d still runs 10s after its host was killed (an orphan)", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPluginOutlivesTheThreadThatOpenedIt: the parent-death signal fires
// when the thread that forked the plugin exits, not the process. A
// goroutine locked to its thread that returns without unlocking ends that
// thread; a plugin it opened must not die with it.
func TestPluginOutlivesTheThreadThatOpenedIt(t *testing.T) {
	bin := plugintest.Build(t, "github.com/outposthq/outpost/plugins/internal/testplugin")
	type opened struct {
		c   *Client
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := Open(ctx, bin, logging.Discard())
		ch <- opened{c, err}
	}()
	o := <-ch
	if o.err != nil {
		t.Fatal(o.err)
	}
	c := o.c
	defer c.Close()
	pid := c.proc.cmd.Process.Pid
	// Give the thread time to exit, and a signal time to arrive.
	time.Sleep(500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Apply(ctx, &proto.ApplyRequest{Root: "/nonexistent", Item: &wire.Item{Id: "ok", Kind: "test", State: wire.State_STATE_PRESENT}})
	if err != nil || c.Exited() || !alive(pid) {
		t.Fatalf("after the opening thread exited: apply = %v, exited = %v, alive = %v; want the plugin running", err, c.Exited(), alive(pid))
	}
}
