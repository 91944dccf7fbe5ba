//go:build unix

package session

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// A technician who goes away (interrupted, network lost) leaves nothing
// running: the host kills what the session started and records why.
func TestTechnicianGoneEndsTheSession(t *testing.T) {
	for _, tc := range []struct {
		name     string
		terminal *wire.Terminal
	}{{"exec over pipes", nil}, {"shell on a terminal", &wire.Terminal{Term: "xterm"}}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			pidFile := filepath.Join(t.TempDir(), "pid")
			open := &wire.SessionOpen{Token: f.token(t, "tina", "berlin"), Kind: wire.SessionOpen_KIND_EXEC,
				Argv: []string{"/bin/sh", "-c", "echo $$ > " + pidFile + "; exec sleep 300"}}
			if tc.terminal != nil {
				open = &wire.SessionOpen{Token: open.Token, Kind: wire.SessionOpen_KIND_SHELL, Terminal: tc.terminal}
			}
			tech, _ := f.open(t, open)
			if tc.terminal != nil {
				wire.WriteMsg(tech, &wire.SessionInput{Body: &wire.SessionInput_Stdin{Stdin: []byte("echo $$ > " + pidFile + "; exec sleep 300\n")}})
			}
			var pid int
			deadline := time.Now().Add(10 * time.Second)
			for pid == 0 && time.Now().Before(deadline) {
				if b, err := os.ReadFile(pidFile); err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
					fmt.Sscan(string(b), &pid)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if pid == 0 {
				t.Fatal("the command never started")
			}
			tech.Close() // gone, without a word
			deadline = time.Now().Add(10 * time.Second)
			for syscall.Kill(pid, 0) == nil {
				if time.Now().After(deadline) {
					t.Fatalf("process %d still runs 10 s after its technician went away", pid)
				}
				time.Sleep(20 * time.Millisecond)
			}
			testutil.Eventually(t, 5*time.Second, func() bool {
				for _, r := range f.s.PendingAudit() {
					if strings.HasSuffix(r.GetAction(), ".end") && strings.Contains(r.GetDetail(), "the technician's connection ended") {
						return true
					}
				}
				return false
			}, "no end record says the technician went away: %v", f.s.PendingAudit())
		})
	}
}

// Exit statuses are a shell's: 128 plus the signal that killed the
// command, 127 for one that is not there.
func TestExitStatusAsAShellReportsIt(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, "tina", "berlin")
	for _, tc := range []struct {
		argv   []string
		code   int32
		errHas string
	}{
		{[]string{"/bin/sh", "-c", "kill -TERM $$"}, 143, ""},
		{[]string{"/bin/sh", "-c", "exit 7"}, 7, ""},
		{[]string{"/nonexistent/tool"}, 127, "start /nonexistent/tool"},
	} {
		_, res := f.open(t, &wire.SessionOpen{Token: tok, Kind: wire.SessionOpen_KIND_EXEC, Argv: tc.argv})
		r := wait(t, res, 10*time.Second)
		if r.end.GetExitCode() != tc.code || !strings.Contains(r.end.GetError(), tc.errHas) || (tc.errHas == "") != (r.end.GetError() == "") {
			t.Errorf("%v: end %v, want status %d and error %q", tc.argv, r.end, tc.code, tc.errHas)
		}
	}
}

// A permission change that takes a right away ends the live sessions that
// ran on it, at once; others go on.
func TestPermissionChangeEndsLiveSessions(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, "tina", "berlin")
	_, cmdRes := f.open(t, &wire.SessionOpen{Token: tok, Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"/bin/sh", "-c", "echo started; exec sleep 300"}})
	testutil.Eventually(t, 10*time.Second, func() bool { return f.s.Live() == 1 }, "the session did not start")
	time.Sleep(100 * time.Millisecond) // let it reach sleep

	// Unchanged rights: nothing ends.
	f.s.Recheck()
	if f.s.Live() != 1 {
		t.Fatal("a recheck with the same permissions ended the session")
	}
	// The group keeps view and files, loses command.
	f.p.Permissions = []*wire.HostPermissions{{Grants: []*wire.Grant{
		{Subject: "group:berlin", Rights: []wire.Right{wire.Right_RIGHT_VIEW, wire.Right_RIGHT_FILES}},
	}}}
	f.s.Recheck()
	r := wait(t, cmdRes, 10*time.Second)
	if !r.end.GetRevoked() || !strings.Contains(r.end.GetError(), "no longer allow you to run commands") {
		t.Fatalf("end %v, want ended by the permission change", r.end)
	}
	found := false
	for _, rec := range f.s.PendingAudit() {
		found = found || rec.GetAction() == "revoked" && strings.Contains(rec.GetDetail(), "no longer give the right command")
	}
	if !found {
		t.Fatalf("no audit record of the cut: %v", f.s.PendingAudit())
	}
}

// A put over an existing file keeps its mode and owner, as cp does; a get
// refuses what is not a regular file (a device would never end).
func TestCopyKeepsWhatItReplaces(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, "tina", "berlin")
	put := func(path string, mode uint32) *result {
		tech, res := f.open(t, &wire.SessionOpen{Token: tok, Kind: wire.SessionOpen_KIND_PUT, Path: path, Mode: mode})
		wire.WriteMsg(tech, &wire.SessionInput{Body: &wire.SessionInput_FileData{FileData: []byte("new contents\n")}})
		wire.WriteMsg(tech, &wire.SessionInput{Body: &wire.SessionInput_FileEnd{FileEnd: true}})
		return wait(t, res, 10*time.Second)
	}
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	owner := os.Geteuid()
	if owner == 0 {
		owner = 65534 // nobody: a service's file
		if err := os.Chown(secret, owner, owner); err != nil {
			t.Fatal(err)
		}
	}
	if r := put(secret, 0o644); r.end.GetError() != "" {
		t.Fatalf("put: %v", r.end)
	}
	st, err := os.Stat(secret)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || int(st.Sys().(*syscall.Stat_t).Uid) != owner {
		t.Fatalf("replaced file is %v owned by %d, want -rw------- owned by %d", st.Mode(), st.Sys().(*syscall.Stat_t).Uid, owner)
	}
	if b, _ := os.ReadFile(secret); string(b) != "new contents\n" {
		t.Fatalf("contents %q", b)
	}

	_, res := f.open(t, &wire.SessionOpen{Token: tok, Kind: wire.SessionOpen_KIND_GET, Path: "/dev/zero"})
	if r := wait(t, res, 10*time.Second); !strings.Contains(r.end.GetError(), "not a regular file") || r.file.Len() != 0 {
		t.Fatalf("get /dev/zero: %d bytes, end %v", r.file.Len(), r.end)
	}
}
