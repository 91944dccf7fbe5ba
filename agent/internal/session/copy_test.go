//go:build unix

package session

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// put sends data to the host as tina, in one frame, and waits for the end.
func (f *fixture) put(t *testing.T, open *wire.SessionOpen, data string) *result {
	t.Helper()
	open.Kind = wire.SessionOpen_KIND_PUT
	open.Token = f.token(t, "tina", "berlin")
	tech, res := f.open(t, open)
	wire.WriteMsg(tech, &wire.SessionInput{Body: &wire.SessionInput_FileData{FileData: []byte(data)}})
	wire.WriteMsg(tech, &wire.SessionInput{Body: &wire.SessionInput_FileEnd{FileEnd: true}})
	return wait(t, res, 10*time.Second)
}

// A get refuses what is not a regular file; a put does not replace one
// either. The agent runs as root: renaming a regular file over
// /dev/null, or a service's named pipe or socket, would break the host
// for everything that uses it; cp would write into the device, and a
// copy that writes whole files only refuses instead.
func TestPutDoesNotReplaceSpecialFiles(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "service.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip(err)
	}
	for _, open := range []*wire.SessionOpen{
		{Path: fifo, Name: "fix.sh"},
		{Path: dir + "/", Name: "service.fifo"}, // into the directory, under the same name
	} {
		r := f.put(t, open, "new contents\n")
		st, err := os.Lstat(fifo)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode()&os.ModeNamedPipe == 0 {
			t.Fatalf("put %s (name %s): exit %d error %q; the named pipe was replaced by a %v; want it refused as not a regular file and the pipe left alone",
				open.GetPath(), open.GetName(), r.end.GetExitCode(), r.end.GetError(), st.Mode())
		}
		if !strings.Contains(r.end.GetError(), "not a regular file on the host (a named pipe)") {
			t.Fatalf("put onto a named pipe: %v, want it refused as not a regular file", r.end)
		}
	}
}

// A new file gets the technician's mode less the host's umask, as cp and
// scp create it, so a 0666 or 0777 file on the technician's laptop does
// not become a world-writable file owned by root (the agent's account)
// on the host, which any local user could then change before root runs
// it.
func TestANewFileFromAPutTakesTheHostsUmask(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	f := newFixture(t)
	dst := filepath.Join(t.TempDir(), "fix.sh")
	if r := f.put(t, &wire.SessionOpen{Path: dst, Mode: 0o777}, "#!/bin/sh\n"); r.end.GetError() != "" {
		t.Fatalf("put: %v", r.end)
	}
	st, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Mode().Perm(), os.FileMode(0o777&^0o022); got != want {
		t.Fatalf("new file is %v, want %v (mode 0777 under umask 022, as cp and scp create it)", got, want)
	}
}

// A put or get that waits on its technician (a slow pipe into
// `outpost cp -`, a CLI that stopped reading) is a live session like any
// other: a revocation, or a permission change, ends it at once, as it
// ends a command, rather than when the technician sends or reads again.
func TestARevocationOrPermissionChangeEndsAStalledCopy(t *testing.T) {
	src := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(src, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		open *wire.SessionOpen
		cut  func(t *testing.T, f *fixture)
	}{
		{"put, revoked", &wire.SessionOpen{Kind: wire.SessionOpen_KIND_PUT, Path: filepath.Join(t.TempDir(), "dst")}, func(t *testing.T, f *fixture) {
			if err := f.s.SetRevocations(f.revocations(t, 1, &wire.Revocation{User: "tina", Disabled: true})); err != nil {
				t.Fatal(err)
			}
		}},
		{"get, revoked", &wire.SessionOpen{Kind: wire.SessionOpen_KIND_GET, Path: src}, func(t *testing.T, f *fixture) {
			if err := f.s.SetRevocations(f.revocations(t, 1, &wire.Revocation{User: "tina", Disabled: true})); err != nil {
				t.Fatal(err)
			}
		}},
		{"put, files right withdrawn", &wire.SessionOpen{Kind: wire.SessionOpen_KIND_PUT, Path: filepath.Join(t.TempDir(), "dst")}, func(t *testing.T, f *fixture) {
			f.p.Permissions = nil
			f.s.Recheck()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.open.Token = f.token(t, "tina", "berlin")
			tech := f.serveOnPipe(t)
			if err := wire.WriteMsg(tech, tc.open); err != nil {
				t.Fatal(err)
			}
			var m wire.SessionOutput
			tech.SetReadDeadline(time.Now().Add(10 * time.Second))
			if err := wire.ReadMsg(tech, &m); err != nil || m.GetAccepted() == nil {
				t.Fatalf("first answer %v (%v), want accepted", &m, err)
			}
			// The technician now neither sends nor reads.
			tc.cut(t, f)
			testutil.Eventually(t, 2*time.Second, func() bool { return f.s.Live() == 0 },
				"%s: the session is still live 2 s after it was cut (want it ended at once, as a command is)", tc.name)
		})
	}
}

// serveOnPipe serves one session on an in-memory pipe; the technician's
// end is closed at the end of the test, which frees a stuck session.
func (f *fixture) serveOnPipe(t *testing.T) net.Conn {
	t.Helper()
	tech, host := net.Pipe()
	t.Cleanup(func() { tech.Close() })
	go f.s.Serve(context.Background(), host, func() { host.Close() })
	return tech
}
