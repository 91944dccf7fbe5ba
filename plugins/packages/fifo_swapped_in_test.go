//go:build unix

package packages

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins/proto"
)

// A local user who may write a folder of a package (one the archive makes
// 0777) can put a fifo where the plugin expects a folder or a file, in
// the moment between the plugin looking at the path and opening it. Opening
// a fifo to read waits for a writer, for ever: the plugin, which holds its
// lock meanwhile, hung until the agent killed it at its time limit, at
// every run, and every package item of the host with it. The plugin opens
// those paths without waiting now, and refuses what is not a folder or a
// regular file.

// TestFifoSwappedInForAFolderDoesNotHangAnInstall: the folder the install
// has just written a file into, swapped for a fifo before it is synced.
func TestFifoSwappedInForAFolderDoesNotHangAnInstall(t *testing.T) {
	e := newEnv(t)
	doc := filepath.Join(e.root, "opt", "tool", "share", "doc")
	e.m.hook = func(point, name string) error {
		if point == "file" && name == "share/doc/README" {
			must(t, os.Rename(doc, doc+".moved"))
			must(t, syscall.Mkfifo(doc, 0o666))
		}
		return nil
	}
	t.Cleanup(func() { unblockFifo(doc) })
	p, art := e.artifact(targz(t, ent{name: "share/", typ: '5', mode: 0o777}, file("share/doc/README", "hello\n")))
	done := make(chan error, 1)
	go func() {
		_, err := e.m.Apply(context.Background(), &proto.ApplyRequest{Root: e.root, ArtifactPath: p,
			Item: pkgItem("tool", "1.0", "", wire.State_STATE_PRESENT, art)})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("apply succeeded with a fifo where the package's folder was")
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("apply hung opening a fifo put where the package's folder was")
	}
}

// TestFifoSwappedInForAFileDoesNotHangItsHash: the hash that verify, undo
// and backup take of a file the plugin has just seen to be regular.
func TestFifoSwappedInForAFileDoesNotHangItsHash(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "f")
	must(t, syscall.Mkfifo(fifo, 0o666))
	t.Cleanup(func() { unblockFifo(fifo) })
	pr, err := os.OpenRoot(dir)
	must(t, err)
	defer pr.Close()
	done := make(chan error, 3)
	go func() {
		_, err := hashIn(pr, "f", 6)
		done <- err
	}()
	go func() {
		done <- backupFile(pr, "f", File{Path: "opt/tool/f", Size: 6}, nil)
	}()
	go func() {
		_, err := copyHook(pr, "f", File{Path: "opt/tool/f", Size: 6})
		done <- err
	}()
	for range 3 {
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("a fifo was read as a package's file")
			}
		case <-time.After(2 * time.Minute):
			t.Fatal("reading a package's file hung on a fifo put in its place")
		}
	}
}

// unblockFifo opens the fifo at p for writing, if there is one, so that a
// reader stuck opening it (a test that failed) goes on.
func unblockFifo(p string) {
	if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		f.Close()
	}
}
