package plugins

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
)

// dieWithHost has the kernel send the plugin SIGKILL when its parent dies,
// however it dies (kill -9, the OOM killer): prctl(PR_SET_PDEATHSIG). Go
// sets it between fork and exec and kills the child itself if the parent
// was already gone by then.
func dieWithHost(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }

// startPinned runs start, which forks the plugin (go-plugin's Client calls
// cmd.Start on the calling goroutine), on a goroutine locked to an OS thread
// of its own, and keeps that thread locked until gone reports the plugin
// reaped.
//
// The parent-death signal is tied to the thread that forked the child, not
// to the process: Linux sends it when that thread exits. The Go runtime ends
// a thread when a goroutine locked to it returns without unlocking, and any
// goroutine of the host (a library's, a test's) may run on the thread that
// forked a plugin: unpinned, a healthy plugin could be killed at any time
// by something unrelated. Pinned, nothing else runs on the thread, which
// therefore lives as long as the host does, or until the plugin is gone.
func startPinned(start func() error, gone func() bool) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- start()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for !gone() {
			<-tick.C
		}
		runtime.UnlockOSThread()
	}()
	return <-errc
}

// pinBinary opens the plugin binary and names it by that open file, so
// that the checksum go-plugin checks and the exec that follows read the
// same file: by its path, a binary renamed into its place between the two
// would run unchecked. The child resolves /proc/self/fd/N before its
// close-on-exec descriptors are closed; a script's interpreter would open
// it after, so a script (a test's) is run by its path, and only if the
// file opened is the one with sum. release closes the file once the
// process started.
func pinBinary(path string, sum []byte) (exe string, release func(), err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	exe = "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	head := make([]byte, 2)
	_, _ = f.ReadAt(head, 0)
	if _, err := os.Stat(exe); err == nil && string(head) != "#!" {
		return exe, func() { f.Close() }, nil
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", nil, fmt.Errorf("hash %s: %w", path, err)
	}
	if !bytes.Equal(h.Sum(nil), sum) {
		return "", nil, plugin.ErrChecksumsDoNotMatch
	}
	return path, func() {}, nil // no /proc, or a script: by the path, as elsewhere
}
