//go:build linux

package plugins

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/plugintest"
	"github.com/outposthq/outpost/plugins/proto"
)

// TestReopenNeverRunsABinaryReplacedAfterItsCheck: the binary's checksum
// is checked at every start, so a binary put in the plugin's place (an
// atomic rename, as an upgrade or an intruder writes it) is refused. It
// must be refused also when it lands between the check and the exec: what
// runs must be the very file that was checked.
func TestReopenNeverRunsABinaryReplacedAfterItsCheck(t *testing.T) {
	bin := plugintest.Build(t, "github.com/outposthq/outpost/plugins/internal/testplugin")
	dir := t.TempDir()
	good, evil, path := filepath.Join(dir, "good"), filepath.Join(dir, "evil"), filepath.Join(dir, "outpost-plugin-test")
	marker := filepath.Join(dir, "evil-ran")
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(evil, []byte("#!/bin/sh\ntouch "+marker+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(good, path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Open(ctx, path, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Swap the good binary and the evil one in and out of the plugin's
	// place while the plugin is restarted.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tmp := path + ".tmp"
		for i := 0; ; i++ {
			select {
			case <-stop:
				os.Remove(tmp)
				return
			default:
			}
			from := good
			if i%2 == 1 {
				from = evil
			}
			os.Remove(tmp)
			if err := os.Link(from, tmp); err == nil {
				os.Rename(tmp, path)
			}
			time.Sleep(100 * time.Microsecond)
		}
	})
	for range 40 {
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = c.Reopen(rctx)
		rcancel()
		if _, err := os.Stat(marker); err == nil {
			break
		}
	}
	close(stop)
	wg.Wait()
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a binary whose checksum was never checked ran: it replaced the plugin between the check and the exec")
	}
}

// orphanPluginEnv, set in the environment of this test binary, makes it a
// plugin (see init) whose Apply starts a process in a session of its own,
// holding the plugin's stderr, writes its pid to the file the variable
// names, and hangs.
const orphanPluginEnv = "OUTPOST_PLUGINS_TEST_ORPHAN_PLUGIN"

func init() {
	if pidFile := os.Getenv(orphanPluginEnv); pidFile != "" && os.Getenv(Handshake.MagicCookieKey) != "" {
		Serve(orphanPlugin{pidFile: pidFile})
		os.Exit(0)
	}
}

type orphanPlugin struct{ pidFile string }

func (orphanPlugin) Describe(context.Context, *proto.DescribeRequest) (*proto.DescribeResponse, error) {
	return &proto.DescribeResponse{Kind: "orphan", Version: "0.0.1"}, nil
}

func (orphanPlugin) Scan(context.Context, *proto.ScanRequest) (*proto.ScanResponse, error) {
	return &proto.ScanResponse{}, nil
}

func (p orphanPlugin) Apply(context.Context, *proto.ApplyRequest) (*proto.ApplyResponse, error) {
	cmd := exec.Command("sleep", "120")
	cmd.Stdout, cmd.Stderr = stderr, stderr // the host's pipe
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	os.WriteFile(p.pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o600)
	select {}
}

// TestTimedOutCallReturnsWhenThePluginLeftAProcessBehind: a plugin whose
// call missed its deadline is killed and the call returns, even when
// something the plugin started escaped its process group (a daemon in a
// session of its own) and still holds the plugin's output open.
func TestTimedOutCallReturnsWhenThePluginLeftAProcessBehind(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "orphan.pid")
	t.Setenv(orphanPluginEnv, pidFile)
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(string(b)); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Open(ctx, os.Args[0], logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { go c.Close() }()

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := c.Apply(ctx, &proto.ApplyRequest{Item: &wire.Item{Id: "x"}})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Apply = %v, want a timeout", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Apply with a 500ms deadline has not returned after 15s: killing the plugin waits for a process it left behind")
	}
	if !c.Exited() {
		t.Fatal("Exited = false after the plugin was killed")
	}
}
