//go:build unix

package session

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// waitPid waits for the shell to write a pid to file and returns it.
func waitPid(t *testing.T, file string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(file); err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
			var pid int
			fmt.Sscan(string(b), &pid)
			if pid > 0 {
				return pid
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the shell never wrote the pid")
	return 0
}

// running says whether pid still runs: a zombie no longer does (killed, it
// waits for init, which a container may not run, to reap it).
func running(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !os.IsNotExist(err) || runtime.GOOS != "linux"
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) == 0 || f[0] != "Z"
}

// A shell on a terminal runs each job in a process group of its own (job
// control). A session cut by a revocation ends every process it started,
// the jobs in the background too, not only the shell's own group: a
// revoked technician leaves nothing running on the host.
func TestARevokedTerminalSessionEndsItsBackgroundJobs(t *testing.T) {
	f := newFixture(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	tech, res := f.open(t, &wire.SessionOpen{Token: f.token(t, "tina", "berlin"), Kind: wire.SessionOpen_KIND_SHELL,
		Terminal: &wire.Terminal{Term: "xterm"}})
	wire.WriteMsg(tech, &wire.SessionInput{Body: &wire.SessionInput_Stdin{Stdin: []byte("sleep 300 & echo $! > " + pidFile + "\n")}})
	pid := waitPid(t, pidFile)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if err := f.s.SetRevocations(f.revocations(t, 1, &wire.Revocation{User: "tina", Disabled: true})); err != nil {
		t.Fatal(err)
	}
	var r *result
	select {
	case r = <-res:
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end within 10 s of its revocation")
	}
	deadline := time.Now().Add(5 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the background job %d still runs 5 s after its session was revoked", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !r.end.GetRevoked() {
		t.Fatalf("end %v, want the technician told the session was revoked", r.end)
	}
}

// A process that left the terminal's session (setsid, as a daemon's start
// script does) but kept the terminal open holds its output open after the
// cut: the technician is still told that the session was revoked, not
// left with a connection that merely drops.
func TestACutTerminalSessionSaysWhyEvenWhenTheTerminalStaysOpen(t *testing.T) {
	f := newFixture(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	tech, res := f.open(t, &wire.SessionOpen{Token: f.token(t, "tina", "berlin"), Kind: wire.SessionOpen_KIND_SHELL,
		Terminal: &wire.Terminal{Term: "xterm"}})
	wire.WriteMsg(tech, &wire.SessionInput{Body: &wire.SessionInput_Stdin{Stdin: []byte("setsid sh -c 'echo $$ > " + pidFile + "; exec sleep 300' &\n")}})
	pid := waitPid(t, pidFile)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if err := f.s.SetRevocations(f.revocations(t, 1, &wire.Revocation{User: "tina", Disabled: true})); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-res:
		if !r.end.GetRevoked() {
			t.Fatalf("end %v, want the technician told the session was revoked", r.end)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end within 10 s of its revocation")
	}
}

// quicSession serves one session on a real QUIC stream over loopback, as
// the direct listener does, and returns the technician's connection and
// stream, with open sent.
func quicSession(t *testing.T, f *fixture, open *wire.SessionOpen) (*quic.Conn, *quic.Stream) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos: []string{wire.ALPNTechnician}}, &quic.Config{MaxIdleTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		conn, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		str, err := conn.AcceptStream(context.Background())
		if err != nil {
			return
		}
		f.s.Serve(context.Background(), str, func() { str.CancelRead(0) })
	}()
	conn, err := quic.DialAddr(ctx, ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{wire.ALPNTechnician}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := wire.WriteMsg(str, open); err != nil {
		t.Fatal(err)
	}
	return conn, str
}

// A command that does not read its input, sent more of it than a pipe
// holds, still ends when its technician goes away: the host does not wait
// to read the end of the stream behind input nobody takes, and leaves
// nothing running for nobody.
func TestTechnicianGoneEndsACommandThatDoesNotReadItsInput(t *testing.T) {
	f := newFixture(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	conn, str := quicSession(t, f, &wire.SessionOpen{Token: f.token(t, "tina", "berlin"), Kind: wire.SessionOpen_KIND_EXEC,
		Argv: []string{"/bin/sh", "-c", "echo $$ > " + pidFile + "; exec sleep 300"}})
	pid := waitPid(t, pidFile)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	go func() {
		block := make([]byte, 32<<10)
		for range 16 { // 512 KiB: more than a pipe holds
			if wire.WriteMsg(str, &wire.SessionInput{Body: &wire.SessionInput_Stdin{Stdin: block}}) != nil {
				return
			}
		}
	}()
	testutil.Eventually(t, 10*time.Second, func() bool { return f.s.Live() == 1 }, "the session did not start")
	time.Sleep(time.Second)               // the input fills the command's pipe
	conn.CloseWithError(0, "interrupted") // gone
	deadline := time.Now().Add(10 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs 10 s after its technician went away", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		for _, r := range f.s.PendingAudit() {
			if r.GetAction() == "exec.end" && strings.Contains(r.GetDetail(), "the technician's connection ended") {
				return true
			}
		}
		return false
	}, "no end record says the technician went away: %v", f.s.PendingAudit())
}

// A get looks at what it opened, not only at what the path named a moment
// before: a local user who swaps a named pipe in for the file between the
// two (a link they own, turned) must not hold the session in an open that
// waits for a writer forever — nor can a revocation or the agent's stop end
// it then — and a device swapped in must not stream without end.
func TestAGetJudgesTheFileItOpened(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, "tina", "berlin")
	dir := t.TempDir()
	regular, fifo, link := filepath.Join(dir, "notes.txt"), filepath.Join(dir, "pipe"), filepath.Join(dir, "link")
	if err := os.WriteFile(regular, []byte("notes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip(err)
	}
	// Frees an open that waits on the pipe, once the test is over.
	t.Cleanup(func() {
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	})
	stop := make(chan struct{})
	swapped := make(chan struct{})
	go func() {
		defer close(swapped)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			to := regular
			if i%2 == 1 {
				to = fifo
			}
			tmp := link + ".new"
			os.Remove(tmp)
			if os.Symlink(to, tmp) == nil {
				os.Rename(tmp, link)
			}
		}
	}()
	defer func() { close(stop); <-swapped }()
	for i := 0; i < 300; i++ {
		_, res := f.open(t, &wire.SessionOpen{Token: tok, Kind: wire.SessionOpen_KIND_GET, Path: link})
		select {
		case r := <-res:
			if r.end == nil {
				t.Fatal("session ended without an end message")
			}
			if r.end.GetError() == "" && r.file.String() != "notes\n" {
				t.Fatalf("get %d: got %q without an error", i, r.file.String())
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("get %d still waits 5 s on: the host opened the named pipe swapped in after it looked", i)
		}
	}
}
