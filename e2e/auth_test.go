package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/testutil"
)

var (
	cliOnce sync.Once
	cliPath string
	cliErr  error
)

// outpostCLI builds the real outpost command line once per run.
func outpostCLI(t testing.TB) string {
	t.Helper()
	cliOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outpost-e2e-cli-")
		if err != nil {
			cliErr = err
			return
		}
		cliPath = filepath.Join(dir, "outpost")
		cmd := exec.Command("go", "build", "-o", cliPath, "./coordinator/cmd/outpost")
		cmd.Dir = testutil.RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			cliErr = fmt.Errorf("build the CLI: %v\n%s", err, out)
		}
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	return cliPath
}

// technician is a person with their own config directory, using the real CLI.
type technician struct {
	t    testing.TB
	c    *coordinatortest.Harness
	name string
	dir  string
	env  []string // extra environment, e.g. direct mode
	// server is the coordinator's URL the CLI is given (default: its
	// plain-HTTP one).
	server string
}

func newTechnician(t testing.TB, c *coordinatortest.Harness, name string) *technician {
	t.Helper()
	c.MustDo("POST", "/v1/users", map[string]any{"name": name, "password": name + "-password-1"}, nil)
	return &technician{t: t, c: c, name: name, dir: t.TempDir()}
}

type cliResult struct {
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

func (tc *technician) cmd(ctx context.Context, stdin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, outpostCLI(tc.t), args...)
	server := tc.c.URL
	if tc.server != "" {
		server = tc.server
	}
	cmd.Env = append(os.Environ(), "OUTPOST_SERVER="+server, "OUTPOST_CONFIG_DIR="+tc.dir, "OUTPOST_TOKEN=", "OUTPOST_TOKEN_FILE=")
	cmd.Env = append(cmd.Env, tc.env...)
	cmd.Stdin = strings.NewReader(stdin)
	return cmd
}

func (tc *technician) run(stdin string, args ...string) cliResult {
	tc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := tc.cmd(ctx, stdin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		tc.t.Fatalf("run outpost %v: %v", args, err)
	}
	return r
}

func (tc *technician) login() {
	tc.t.Helper()
	if r := tc.run(tc.name+"-password-1\n", "login", tc.name, "--password-stdin"); r.code != 0 {
		tc.t.Fatalf("%s: login: %v", tc.name, r)
	}
}

// waitRevision waits until the agent accepted at least rev.
func waitRevision(t testing.TB, a *testAgent, rev uint64) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() bool { return a.a.Revision() >= rev }, "agent %s did not accept revision %d", a.cfg.Hostname, rev)
}

func setOfficePerms(t testing.TB, c *coordinatortest.Harness, office string, grants ...map[string]any) uint64 {
	t.Helper()
	var out struct{ Revision uint64 }
	c.MustDo("PUT", "/v1/offices/"+office+"/permissions", map[string]any{"grants": grants}, &out)
	return out.Revision
}

// TestTechnicianSessionsBrokered is the technician's day: sign in once,
// then exec, inventory, cp both ways and a shell on a host whose agent
// accepts no inbound connection, all brokered by the coordinator over the
// agent's own QUIC connection; then group changes and disabling take
// effect without touching the host.
func TestTechnicianSessionsBrokered(t *testing.T) {
	c := coordinatortest.New(t)
	c.CreateOffice("berlin", nil)
	pc := startAgent(t, c, c.EnrollToken("berlin", "agent", 1), "pc-berlin-1", "127.0.0.41")
	c.MustDo("POST", "/v1/groups", map[string]any{"name": "berlin-techs"}, nil)
	tina := newTechnician(t, c, "tina")
	tom := newTechnician(t, c, "tom")
	c.MustDo("PATCH", "/v1/groups/berlin-techs", map[string]any{"add": []string{"tina"}}, nil)
	rev := setOfficePerms(t, c, "berlin", map[string]any{"subject": "group:berlin-techs", "rights": []string{"view", "command", "files"}})
	waitRevision(t, pc, rev)

	tina.login()
	st, err := os.Stat(filepath.Join(tina.dir, "credentials.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", st, err)
	}

	t.Run("exec", func(t *testing.T) {
		r := tina.run("", "exec", "pc-berlin-1", "--", "/bin/sh", "-c", "echo hello from $(hostname -s 2>/dev/null || echo host); echo oops >&2; exit 0")
		if r.code != 0 || !strings.Contains(r.stdout, "hello from") || !strings.Contains(r.stderr, "oops") {
			t.Fatalf("%v", r)
		}
		r = tina.run("", "exec", pc.a.ID(), "--", "/bin/sh", "-c", "exit 4")
		if r.code == 0 || !strings.Contains(r.stderr, "status 4") {
			t.Fatalf("non-zero exit: %v", r)
		}
		r = tina.run("piped input\n", "exec", "pc-berlin-1", "--stdin", "--", "cat")
		if r.stdout != "piped input\n" {
			t.Fatalf("stdin: %v", r)
		}
	})
	t.Run("inventory", func(t *testing.T) {
		r := tina.run("", "inventory", "pc-berlin-1")
		if r.code != 0 || !strings.Contains(r.stdout, "pc-berlin-1") || !strings.Contains(r.stdout, "berlin") {
			t.Fatalf("%v", r)
		}
	})
	t.Run("cp both ways", func(t *testing.T) {
		local := filepath.Join(t.TempDir(), "fix.sh")
		payload := bytes.Repeat([]byte("#!/bin/sh\necho fixed\n"), 5000)
		os.WriteFile(local, payload, 0o755)
		remote := pc.path("fix.sh")
		if r := tina.run("", "cp", local, "pc-berlin-1:"+remote); r.code != 0 {
			t.Fatalf("put: %v", r)
		}
		if got, _ := os.ReadFile(remote); !bytes.Equal(got, payload) {
			t.Fatalf("host has %d bytes, want %d", len(got), len(payload))
		}
		back := filepath.Join(t.TempDir(), "back.sh")
		if r := tina.run("", "cp", "pc-berlin-1:"+remote, back); r.code != 0 {
			t.Fatalf("get: %v", r)
		}
		if got, _ := os.ReadFile(back); !bytes.Equal(got, payload) {
			t.Fatalf("got back %d bytes, want %d", len(got), len(payload))
		}
		// A new local file gets the host's mode less the local umask, as
		// cp gives it: the script stays executable, a secret stays private.
		probe := filepath.Join(t.TempDir(), "probe")
		if f, err := os.OpenFile(probe, os.O_CREATE|os.O_WRONLY, 0o666); err == nil {
			f.Close()
		}
		usual, _ := os.Stat(probe)
		mask := usual.Mode().Perm() | (usual.Mode().Perm()&0o444)>>2
		hostMode, _ := os.Stat(remote)
		if st, err := os.Stat(back); err != nil || st.Mode().Perm() != hostMode.Mode().Perm()&mask {
			t.Fatalf("the copy is %v (%v), want %v", st.Mode(), err, hostMode.Mode().Perm()&mask)
		}
		secret := pc.path("secret.conf")
		os.WriteFile(secret, []byte("password=x\n"), 0o640)
		os.Chmod(secret, 0o640)
		localSecret := filepath.Join(t.TempDir(), "secret.conf")
		if r := tina.run("", "cp", "pc-berlin-1:"+secret, localSecret); r.code != 0 {
			t.Fatalf("get the secret: %v", r)
		}
		if st, err := os.Stat(localSecret); err != nil || st.Mode().Perm() != 0o640&mask {
			t.Fatalf("the copy of a 0640 file is %v (%v), want %v", st.Mode(), err, 0o640&mask)
		}
		// A copy onto a device writes into it, and leaves the device a device.
		if r := tina.run("", "cp", "pc-berlin-1:"+remote, "/dev/null"); r.code != 0 {
			t.Fatalf("get onto /dev/null: %v", r)
		}
		if st, err := os.Stat("/dev/null"); err != nil || st.Mode()&os.ModeCharDevice == 0 {
			t.Fatalf("/dev/null after a copy onto it: %v %v", st.Mode(), err)
		}
		// One file at a time: a directory is refused before anything is sent.
		if r := tina.run("", "cp", filepath.Dir(local), "pc-berlin-1:"+remote+".d"); r.code != 2 || !strings.Contains(r.stderr, "not a regular file") {
			t.Fatalf("cp of a directory: %v", r)
		}
		// Into a directory, as cp does: the file keeps its name.
		dir := filepath.Dir(remote)
		os.Remove(remote)
		if r := tina.run("", "cp", local, "pc-berlin-1:"+dir+"/"); r.code != 0 {
			t.Fatalf("put into a directory: %v", r)
		}
		if got, _ := os.ReadFile(remote); !bytes.Equal(got, payload) {
			t.Fatalf("put into %s/: host has %d bytes at %s, want %d", dir, len(got), remote, len(payload))
		}
	})
	t.Run("shell", func(t *testing.T) {
		r := tina.run("echo shell-$((6*7))\nexit\n", "connect", "pc-berlin-1")
		if r.code != 0 || !strings.Contains(r.stdout, "shell-42") {
			t.Fatalf("%v", r)
		}
	})
	t.Run("shell on a terminal", func(t *testing.T) {
		// The technician's own terminal is a pseudo-terminal here: the CLI
		// must give the host's shell a terminal of the same size, in raw
		// mode, and pass a resize on.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := tina.cmd(ctx, "", "connect", "pc-berlin-1")
		tty, out, see := onTerminal(t, cmd, 31, 97)
		tty.Write([]byte("test -t 0 && echo tty-$TERM-$((6*7)); stty size\r"))
		see("tty-vt100-42")
		see("31 97")
		if err := pty.Setsize(tty, &pty.Winsize{Rows: 45, Cols: 120}); err != nil {
			t.Fatal(err)
		}
		cmd.Process.Signal(syscall.SIGWINCH)
		time.Sleep(200 * time.Millisecond)
		tty.Write([]byte("stty size; exit 5\r"))
		see("45 120")
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 5 {
			t.Fatalf("connect ended with %v, want exit status 5:\n%s", err, out.String())
		}
	})
	t.Run("exec on a terminal", func(t *testing.T) {
		// exec -t, as ssh -t: the command gets a terminal of this one's
		// size, keys go to it, and its status is outpost's.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := tina.cmd(ctx, "", "exec", "-t", "pc-berlin-1", "--", "/bin/sh", "-c", "test -t 0 && echo tty-$TERM; stty size; read line; echo got-$line; exit 6")
		tty, out, see := onTerminal(t, cmd, 27, 88)
		see("tty-vt100")
		see("27 88")
		tty.Write([]byte("typed\r"))
		see("got-typed")
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 6 {
			t.Fatalf("exec -t ended with %v, want exit status 6:\n%s", err, out.String())
		}
		// Without a terminal here, -t says so and runs the command all the same.
		if r := tina.run("", "exec", "-t", "pc-berlin-1", "--", "/bin/sh", "-c", "test -t 0 || echo no-tty"); r.code != 0 || r.stdout != "no-tty\n" || !strings.Contains(r.stderr, "no terminal here") {
			t.Fatalf("exec -t from a pipe: %v", r)
		}
	})
	t.Run("not in the group", func(t *testing.T) {
		tom.login()
		r := tom.run("", "exec", "pc-berlin-1", "--", "true")
		// The coordinator tells tom no more than that he may reach no
		// host of that name.
		if r.code == 0 || !strings.Contains(r.stderr, `no host you may reach is called "pc-berlin-1"`) {
			t.Fatalf("tom was let in: %v", r)
		}
		if r := tom.run("", "hosts"); r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "no host grants tom any right") {
			t.Fatalf("tom's hosts: %v", r)
		}
	})
	t.Run("hosts", func(t *testing.T) {
		// Where tina may work, found without an API role.
		r := tina.run("", "hosts")
		want := regexp.MustCompile(`(?m)^HOST +ID +OFFICE +STATE +RIGHTS\npc-berlin-1 +` + pc.a.ID() + ` +berlin +online +view,command,files\n$`)
		if r.code != 0 || !want.MatchString(r.stdout) {
			t.Fatalf("tina's hosts: %v", r)
		}
		if r := tina.run("", "hosts", "--office", "berlin", "PC-BERLIN"); r.code != 0 || !strings.Contains(r.stdout, pc.a.ID()) {
			t.Fatalf("tina's hosts in berlin matching PC-BERLIN: %v", r)
		}
		if r := tina.run("", "hosts", "nothing-like-it"); r.code != 0 || !strings.Contains(r.stderr, "among those asked for") {
			t.Fatalf("tina's hosts matching nothing: %v", r)
		}
	})
	t.Run("group change without touching the host", func(t *testing.T) {
		c.MustDo("PATCH", "/v1/groups/berlin-techs", map[string]any{"add": []string{"tom"}}, nil)
		tom.login() // a token that carries the group
		if r := tom.run("", "exec", "pc-berlin-1", "--", "true"); r.code != 0 {
			t.Fatalf("tom, now in the group: %v", r)
		}
		c.MustDo("PATCH", "/v1/groups/berlin-techs", map[string]any{"remove": []string{"tom"}}, nil)
		if r := tom.run("", "exec", "pc-berlin-1", "--", "true"); r.code == 0 || !strings.Contains(r.stderr, "revoked") {
			t.Fatalf("tom's old token still works after leaving the group: %v", r)
		}
	})
	t.Run("interrupted technician leaves nothing running", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		pidFile := filepath.Join(t.TempDir(), "pid")
		cmd := tina.cmd(ctx, "", "exec", "pc-berlin-1", "--", "/bin/sh", "-c", "echo $$ > "+pidFile+"; echo started; exec sleep 300")
		var out, errb syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 20*time.Second, func() bool { return strings.Contains(out.String(), "started") }, "session did not start: %s", errb.String())
		var pid int
		if b, err := os.ReadFile(pidFile); err != nil || func() bool { _, err := fmt.Sscan(string(b), &pid); return err != nil }() {
			t.Fatalf("pid file: %v", err)
		}
		_ = cmd.Process.Signal(os.Interrupt) // Ctrl-C
		_ = cmd.Wait()
		testutil.Eventually(t, 10*time.Second, func() bool { return syscall.Kill(pid, 0) != nil },
			"the command (pid %d) still runs on the host after its technician's Ctrl-C", pid)
	})
	t.Run("a right taken away mid-session", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := tina.cmd(ctx, "", "exec", "pc-berlin-1", "--", "/bin/sh", "-c", "echo started; sleep 60")
		var out, errb syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		testutil.Eventually(t, 20*time.Second, func() bool { return strings.Contains(out.String(), "started") }, "session did not start: %s", errb.String())
		// The group keeps view and files; command goes.
		waitRevision(t, pc, setOfficePerms(t, c, "berlin", map[string]any{"subject": "group:berlin-techs", "rights": []string{"view", "files"}}))
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the session went on 10 s after its right was taken away")
		}
		if !strings.Contains(errb.String(), "no longer allow you to run commands") {
			t.Fatalf("the CLI did not say why: %s", errb.String())
		}
		waitRevision(t, pc, setOfficePerms(t, c, "berlin", map[string]any{"subject": "group:berlin-techs", "rights": []string{"view", "command", "files"}}))
	})
	t.Run("disabled mid-session", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := tina.cmd(ctx, "", "exec", "pc-berlin-1", "--", "/bin/sh", "-c", "echo started; sleep 60")
		var out, errb syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		testutil.Eventually(t, 20*time.Second, func() bool { return strings.Contains(out.String(), "started") }, "session did not start: %s", errb.String())
		start := time.Now()
		c.MustDo("PATCH", "/v1/users/tina", map[string]any{"disabled": true}, nil)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("the disabled user's session was not cut within 5 s")
		}
		cut := time.Since(start)
		t.Logf("live session of a disabled user cut %v after the API call", cut)
		if !strings.Contains(errb.String(), "revoked") {
			t.Fatalf("the CLI did not say why: %s", errb.String())
		}
		if r := tina.run("", "exec", "pc-berlin-1", "--", "true"); r.code == 0 {
			t.Fatalf("a disabled user started a session: %v", r)
		}
	})
	t.Run("audit reaches the coordinator from the host", func(t *testing.T) {
		type event struct {
			Actor, Action, Detail, Source string
			Allowed                       bool
		}
		var got struct{ Events []event }
		testutil.Eventually(t, 20*time.Second, func() bool {
			c.MustDo("GET", "/v1/audit?host="+pc.a.ID(), nil, &got)
			seen := map[string]bool{}
			for _, e := range got.Events {
				seen[e.Actor+" "+e.Action+" "+fmt.Sprint(e.Allowed)] = true
			}
			return seen["tina exec true"] && seen["tina exec.end true"] && seen["tina shell true"] && seen["tina shell.end true"] && seen["tina revoked true"]
		}, "host audit records missing: %+v", got.Events)
		var coord struct{ Events []event }
		c.MustDo("GET", "/v1/audit?action=connect", nil, &coord)
		if len(coord.Events) < 5 {
			t.Fatalf("the coordinator recorded %d connects", len(coord.Events))
		}
		// tom, with no right on the host, was refused by the coordinator.
		if !slices.ContainsFunc(coord.Events, func(e event) bool {
			return e.Actor == "tom" && !e.Allowed && strings.Contains(e.Detail, "no right on any host")
		}) {
			t.Fatalf("the coordinator did not record that it refused tom: %+v", coord.Events)
		}
	})
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// onTerminal starts cmd (the CLI, with TERM=vt100) on a pseudo-terminal of
// rows × cols, as a technician's own terminal, and gives the terminal, what
// it has shown, and see, which waits until it has shown want.
func onTerminal(t *testing.T, cmd *exec.Cmd, rows, cols uint16) (*os.File, *syncBuffer, func(want string)) {
	t.Helper()
	cmd.Stdin = nil
	cmd.Env = append(cmd.Env, "TERM=vt100")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: rows, Cols: cols})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	out := &syncBuffer{}
	go io.Copy(out, tty)
	return tty, out, func(want string) {
		t.Helper()
		testutil.Eventually(t, 20*time.Second, func() bool { return strings.Contains(out.String(), want) },
			"the terminal never showed %q:\n%s", want, out.String())
	}
}
