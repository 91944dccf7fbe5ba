//go:build linux

package agent

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A refused file is remembered by inode and mtime only. A fix copied in the
// way install(1) and install.sh do it (unlink, then create) commonly gets
// the refused file's freed inode back, and a reproducible build or
// install -p / cp -p / rsync -t gives it the same mtime: the good file is
// then taken for the refused one and never checked, and the agent reports
// the old refusal forever.
func TestAGoodFileInTheRefusedFilesInodeIsChecked(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "outpost-agent")
	reviewScript(t, exe, "echo 1.0.0\n")
	// The running image stays allocated, as it does for a running agent.
	if err := os.Link(exe, exe+".running"); err != nil {
		t.Fatal(err)
	}
	a := reviewWatch(t, exe)
	stamp := time.Unix(1704067200, 0) // SOURCE_DATE_EPOCH of the release builds
	reviewScript(t, exe, reviewBad)
	if err := os.Chtimes(exe, stamp, stamp); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.upgrade.Problem() == "" {
		if time.Now().After(deadline) {
			t.Fatal("the bad file was not refused")
		}
		time.Sleep(20 * time.Millisecond)
	}
	badFi, _ := os.Stat(exe)
	// install -p: unlink the destination, create it anew, keep the mtime.
	if err := os.Remove(exe); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"+reviewGood), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(exe, stamp, stamp); err != nil {
		t.Fatal(err)
	}
	goodFi, _ := os.Stat(exe)
	if badFi.Sys().(*syscall.Stat_t).Ino != goodFi.Sys().(*syscall.Stat_t).Ino {
		t.Skip("this file system did not hand the freed inode back; the case needs it")
	}
	select {
	case <-a.upgrade.notify:
	case <-time.After(3 * time.Second):
		t.Fatalf("a good executable (%d bytes, was %d) in place of the refused one was never checked; the agent still reports %q",
			goodFi.Size(), badFi.Size(), a.upgrade.Problem())
	}
}
