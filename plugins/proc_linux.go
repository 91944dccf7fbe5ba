package plugins

import (
	"runtime"
	"syscall"
	"time"
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
