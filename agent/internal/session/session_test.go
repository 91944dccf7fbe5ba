package session

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

type fixedPolicy struct{ p *wire.Policy }

func (f fixedPolicy) Policy() *wire.Policy { return f.p }

type fixedInventory struct{}

func (fixedInventory) Inventory() *wire.Inventory {
	return &wire.Inventory{MemberId: "ag-1", Hostname: "pc-1", Os: "linux"}
}

type fixture struct {
	s   *Server
	key ed25519.PrivateKey
	dir string
	p   *wire.Policy // what the host holds; a test may change it, then call Recheck
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, nil)
}

// newFixtureWith is newFixture with its configuration changed by change.
func newFixtureWith(t *testing.T, change func(*Config)) *fixture {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(nil)
	p := &wire.Policy{Office: "berlin", Revision: 1,
		TokenKeys: []*wire.TokenKey{{KeyId: wire.KeyID(pub), PublicKey: pub}},
		Permissions: []*wire.HostPermissions{{Grants: []*wire.Grant{
			{Subject: "group:berlin", Rights: []wire.Right{wire.Right_RIGHT_VIEW, wire.Right_RIGHT_COMMAND, wire.Right_RIGHT_FILES}},
			{Subject: "user:tom", Rights: []wire.Right{wire.Right_RIGHT_COMMAND}, Deny: true},
		}}}}
	dir := t.TempDir()
	cfg := Config{DataDir: dir, MemberID: "ag-1", Shell: "/bin/sh"}
	if change != nil {
		change(&cfg)
	}
	s, err := New(cfg, fixedPolicy{p}, fixedInventory{}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &fixture{s: s, key: priv, dir: dir, p: p}
}

func (f *fixture) token(t *testing.T, user string, groups ...string) string {
	t.Helper()
	now := time.Now()
	tok, err := wire.SignToken(f.key, &wire.AccessToken{User: user, Groups: groups, IssuedUnixMs: now.UnixMilli(), ExpiresUnixMs: now.Add(time.Minute).UnixMilli(), Audience: "ag-1"})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// revocations is a list signed with the fixture's token key.
func (f *fixture) revocations(t *testing.T, issued int64, revs ...*wire.Revocation) *wire.SignedRevocations {
	t.Helper()
	sr, err := wire.SignRevocations(f.key, &wire.RevocationList{IssuedUnixMs: issued, Revocations: revs})
	if err != nil {
		t.Fatal(err)
	}
	return sr
}

type result struct {
	accepted       *wire.SessionAccepted
	stdout, stderr bytes.Buffer
	file           bytes.Buffer
	inventory      *wire.Inventory
	report         *wire.Report
	end            *wire.SessionEnd
}

// open starts a session over an in-memory pipe and returns the
// technician's end and a channel with the collected outcome.
func (f *fixture) open(t *testing.T, open *wire.SessionOpen) (net.Conn, <-chan *result) {
	t.Helper()
	return f.openCtx(t, context.Background(), open)
}

// openCtx is open with a context of the test's (WithRemote, say).
func (f *fixture) openCtx(t *testing.T, ctx context.Context, open *wire.SessionOpen) (net.Conn, <-chan *result) {
	t.Helper()
	tech, host := net.Pipe()
	go f.s.Serve(ctx, host, func() { host.Close() })
	if err := wire.WriteMsg(tech, open); err != nil {
		t.Fatal(err)
	}
	res := make(chan *result, 1)
	go func() {
		r := &result{}
		defer func() { res <- r }()
		for {
			var m wire.SessionOutput
			if err := wire.ReadMsg(tech, &m); err != nil {
				return
			}
			switch b := m.GetBody().(type) {
			case *wire.SessionOutput_Accepted:
				r.accepted = b.Accepted
			case *wire.SessionOutput_Stdout:
				r.stdout.Write(b.Stdout)
			case *wire.SessionOutput_Stderr:
				r.stderr.Write(b.Stderr)
			case *wire.SessionOutput_FileData:
				r.file.Write(b.FileData)
			case *wire.SessionOutput_Inventory:
				r.inventory = b.Inventory
			case *wire.SessionOutput_Report:
				r.report = &wire.Report{}
				if err := proto.Unmarshal(b.Report, r.report); err != nil {
					r.report = nil
				}
			case *wire.SessionOutput_End:
				r.end = b.End
				tech.Close()
				return
			}
		}
	}()
	t.Cleanup(func() { tech.Close() })
	return tech, res
}

func wait(t *testing.T, res <-chan *result, d time.Duration) *result {
	t.Helper()
	select {
	case r := <-res:
		if r.end == nil {
			t.Fatal("session ended without an end message")
		}
		return r
	case <-time.After(d):
		t.Fatalf("session did not end within %v", d)
	}
	return nil
}

func TestExecAndRefusals(t *testing.T) {
	f := newFixture(t)
	_, other, _ := ed25519.GenerateKey(nil)
	foreign, _ := wire.SignToken(other, &wire.AccessToken{User: "tina", Groups: []string{"berlin"}, ExpiresUnixMs: time.Now().Add(time.Minute).UnixMilli(), Audience: "ag-1"})
	expired, _ := wire.SignToken(f.key, &wire.AccessToken{User: "tina", Groups: []string{"berlin"}, ExpiresUnixMs: time.Now().Add(-time.Second).UnixMilli(), Audience: "ag-1"})
	// A host takes only a session token signed for itself: not the
	// technician's access token, not another host's session token.
	access, _ := wire.SignToken(f.key, &wire.AccessToken{User: "tina", Groups: []string{"berlin"}, ExpiresUnixMs: time.Now().Add(time.Minute).UnixMilli()})
	otherHost, _ := wire.SignToken(f.key, &wire.AccessToken{User: "tina", Groups: []string{"berlin"}, ExpiresUnixMs: time.Now().Add(time.Minute).UnixMilli(), Audience: "ag-2"})
	exec := []string{"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}
	for _, tc := range []struct {
		name   string
		token  string
		deny   string
		stdout string
		code   int32
	}{
		{"group member", f.token(t, "tina", "berlin"), "", "out\n", 3},
		{"deny wins for tom", f.token(t, "tom", "berlin"), "may not run commands", "", -1},
		{"not in the group", f.token(t, "eve", "paris"), "may not run commands", "", -1},
		{"other coordinator", foreign, "another coordinator", "", -1},
		{"expired", expired, "expired", "", -1},
		{"garbage", "ott1.xyz", "malformed", "", -1},
		{"an access token", access, "an access token opens no session on a host", "", -1},
		{"another host's session token", otherHost, "is for host ag-2, not this one", "", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, res := f.open(t, &wire.SessionOpen{Token: tc.token, Kind: wire.SessionOpen_KIND_EXEC, Argv: exec})
			r := wait(t, res, 10*time.Second)
			if tc.deny != "" {
				if !r.end.GetDenied() || !strings.Contains(r.end.GetError(), tc.deny) || r.accepted != nil {
					t.Fatalf("end %v, want denied with %q", r.end, tc.deny)
				}
				return
			}
			if r.accepted == nil || r.stdout.String() != tc.stdout || r.stderr.String() != "err\n" || r.end.GetExitCode() != tc.code {
				t.Fatalf("accepted %v stdout %q stderr %q end %v", r.accepted, r.stdout.String(), r.stderr.String(), r.end)
			}
		})
	}
	// Seven refusals, the allowed exec, and how the exec ended.
	recs := f.s.PendingAudit()
	if len(recs) != 9 {
		t.Fatalf("%d audit records, want 9", len(recs))
	}
	var actions []string
	for _, r := range recs {
		if r.GetAllowed() {
			actions = append(actions, r.GetAction())
			if r.GetUser() != "tina" || !strings.Contains(r.GetDetail(), "echo out") {
				t.Fatalf("audit record %v", r)
			}
		}
		if r.GetAction() == "exec.end" && !regexp.MustCompile(`: exit 3 after \d+(\.\d)?m?s, 8 B of output$`).MatchString(r.GetDetail()) {
			t.Fatalf("end record %q, want the exit status, the time and the output", r.GetDetail())
		}
	}
	if strings.Join(actions, " ") != "exec exec.end" {
		t.Fatalf("allowed records %v, want exec and exec.end", actions)
	}
	// The spool survives a restart and empties on acknowledgement.
	s2, err := New(Config{DataDir: f.dir, MemberID: "ag-1"}, fixedPolicy{}, fixedInventory{}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if len(s2.PendingAudit()) != 9 {
		t.Fatalf("after restart %d records", len(s2.PendingAudit()))
	}
	s2.AckAudit(recs[:4])
	if len(s2.PendingAudit()) != 5 {
		t.Fatalf("after ack %d records, want 5", len(s2.PendingAudit()))
	}
}

func TestStdinAndShell(t *testing.T) {
	f := newFixture(t)
	tech, res := f.open(t, &wire.SessionOpen{Token: f.token(t, "tina", "berlin"), Kind: wire.SessionOpen_KIND_SHELL})
	for _, m := range []*wire.SessionInput{
		{Body: &wire.SessionInput_Stdin{Stdin: []byte("echo hello-$((40+2))\n")}},
		{Body: &wire.SessionInput_Stdin{Stdin: []byte("exit 7\n")}},
	} {
		if err := wire.WriteMsg(tech, m); err != nil {
			t.Fatal(err)
		}
	}
	r := wait(t, res, 10*time.Second)
	if !strings.Contains(r.stdout.String(), "hello-42") || r.end.GetExitCode() != 7 {
		t.Fatalf("stdout %q end %v", r.stdout.String(), r.end)
	}
}

func TestShellOnTerminal(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no pseudo-terminals on windows: the shell runs over pipes")
	}
	f := newFixture(t)
	tech, host := net.Pipe()
	t.Cleanup(func() { tech.Close() })
	go f.s.Serve(context.Background(), host, func() { host.Close() })
	if err := wire.WriteMsg(tech, &wire.SessionOpen{Token: f.token(t, "tina", "berlin"), Kind: wire.SessionOpen_KIND_SHELL,
		Terminal: &wire.Terminal{Term: "vt100", Size: &wire.WindowSize{Rows: 33, Cols: 101}}}); err != nil {
		t.Fatal(err)
	}
	// The terminal's output as it comes, so that the resize is sent only
	// once the shell has answered at the first size.
	var mu sync.Mutex
	var out strings.Builder
	ended := make(chan *wire.SessionEnd, 1)
	go func() {
		defer close(ended)
		for {
			var m wire.SessionOutput
			if err := wire.ReadMsg(tech, &m); err != nil {
				return
			}
			switch b := m.GetBody().(type) {
			case *wire.SessionOutput_Stdout:
				mu.Lock()
				out.Write(b.Stdout)
				mu.Unlock()
			case *wire.SessionOutput_End:
				ended <- b.End
				return
			}
		}
	}()
	shown := func(want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			got := out.String()
			mu.Unlock()
			if strings.Contains(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("terminal output lacks %q:\n%s", want, got)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	send := func(m *wire.SessionInput) {
		t.Helper()
		if err := wire.WriteMsg(tech, m); err != nil {
			t.Fatal(err)
		}
	}
	send(&wire.SessionInput{Body: &wire.SessionInput_Stdin{Stdin: []byte("test -t 0 && echo is-a-tty-$TERM; stty size\n")}})
	shown("is-a-tty-vt100")
	shown("33 101")
	send(&wire.SessionInput{Body: &wire.SessionInput_Resize{Resize: &wire.WindowSize{Rows: 50, Cols: 132}}})
	send(&wire.SessionInput{Body: &wire.SessionInput_Stdin{Stdin: []byte("stty size; exit 3\n")}})
	shown("50 132")
	select {
	case end := <-ended:
		if end.GetExitCode() != 3 {
			t.Errorf("exit code %d, want 3", end.GetExitCode())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the shell did not end")
	}
}

func TestTerminalBounds(t *testing.T) {
	for in, want := range map[string]string{"xterm-256color": "xterm-256color", "": "xterm", "a b": "xterm",
		"x;rm -rf /": "xterm", strings.Repeat("x", 65): "xterm", "screen.linux": "screen.linux"} {
		if got := termName(in); got != want {
			t.Errorf("termName(%q) = %q, want %q", in, got, want)
		}
	}
	if clampCells(0, 24) != 24 || clampCells(70000, 24) != 1000 || clampCells(40, 24) != 40 {
		t.Error("clampCells does not bound terminal sizes")
	}
}

func TestRevocationCutsLiveSession(t *testing.T) {
	f := newFixture(t)
	_, res := f.open(t, &wire.SessionOpen{Token: f.token(t, "tina", "berlin"), Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"/bin/sh", "-c", "echo started; sleep 60"}})
	deadline := time.Now().Add(5 * time.Second)
	for f.s.Live() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if f.s.Live() != 1 {
		t.Fatal("session did not start")
	}
	// Another user's revocation leaves it alone.
	if err := f.s.SetRevocations(f.revocations(t, 1, &wire.Revocation{User: "tom", Disabled: true})); err != nil {
		t.Fatal(err)
	}
	if f.s.Live() != 1 {
		t.Fatal("someone else's revocation ended the session")
	}
	start := time.Now()
	// A list signed by another key (a forged one from a peer) is refused.
	_, other, _ := ed25519.GenerateKey(nil)
	forged, _ := wire.SignRevocations(other, &wire.RevocationList{IssuedUnixMs: 9})
	if err := f.s.SetRevocations(forged); err == nil {
		t.Fatal("took a revocation list signed by an unknown key")
	}
	if err := f.s.SetRevocations(f.revocations(t, 2, &wire.Revocation{User: "tina", Disabled: true})); err != nil {
		t.Fatal(err)
	}
	r := wait(t, res, 5*time.Second)
	if !r.end.GetRevoked() {
		t.Fatalf("end %v, want revoked", r.end)
	}
	t.Logf("session cut %v after the revocation", time.Since(start))
	// New sessions are refused, and an older list does not undo it.
	if err := f.s.SetRevocations(f.revocations(t, 1)); !errors.Is(err, ErrStaleRevocations) {
		t.Fatalf("an older list: %v, want ErrStaleRevocations", err)
	}
	_, res = f.open(t, &wire.SessionOpen{Token: f.token(t, "tina", "berlin"), Kind: wire.SessionOpen_KIND_INVENTORY})
	if r := wait(t, res, 5*time.Second); !r.end.GetDenied() || !strings.Contains(r.end.GetError(), "revoked") {
		t.Fatalf("after revocation: %v", r.end)
	}
	// The list survives a restart.
	s2, err := New(Config{DataDir: f.dir, MemberID: "ag-1"}, fixedPolicy{}, fixedInventory{}, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if !s2.revs.Revoked(&wire.AccessToken{User: "tina"}) {
		t.Fatal("revocation list lost at restart")
	}
}

func TestFilesAndInventory(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, "tina", "berlin")
	dst := filepath.Join(t.TempDir(), "hello.txt")
	payload := bytes.Repeat([]byte("outpost "), 20000) // several chunks
	tech, res := f.open(t, &wire.SessionOpen{Token: tok, Kind: wire.SessionOpen_KIND_PUT, Path: dst, Mode: 0o600})
	for i := 0; i < len(payload); i += 50000 {
		end := min(i+50000, len(payload))
		wire.WriteMsg(tech, &wire.SessionInput{Body: &wire.SessionInput_FileData{FileData: payload[i:end]}})
	}
	wire.WriteMsg(tech, &wire.SessionInput{Body: &wire.SessionInput_FileEnd{FileEnd: true}})
	if r := wait(t, res, 10*time.Second); r.end.GetError() != "" {
		t.Fatalf("put: %v", r.end)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("put wrote %d bytes (%v), want %d", len(got), err, len(payload))
	}
	if st, _ := os.Stat(dst); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	// Set-id and sticky bits are never set from a copy.
	suid := filepath.Join(filepath.Dir(dst), "suid")
	tech, res = f.open(t, &wire.SessionOpen{Token: tok, Kind: wire.SessionOpen_KIND_PUT, Path: suid, Mode: 0o7755})
	wire.WriteMsg(tech, &wire.SessionInput{Body: &wire.SessionInput_FileData{FileData: []byte("#!/bin/sh\n")}})
	wire.WriteMsg(tech, &wire.SessionInput{Body: &wire.SessionInput_FileEnd{FileEnd: true}})
	if r := wait(t, res, 10*time.Second); r.end.GetError() != "" {
		t.Fatalf("put: %v", r.end)
	}
	if st, err := os.Stat(suid); err != nil || st.Mode() != 0o755 {
		t.Fatalf("a put with mode 7755 made %v (%v), want -rwxr-xr-x", st.Mode(), err)
	}
	_, res = f.open(t, &wire.SessionOpen{Token: tok, Kind: wire.SessionOpen_KIND_GET, Path: dst})
	if r := wait(t, res, 10*time.Second); !bytes.Equal(r.file.Bytes(), payload) || r.end.GetError() != "" {
		t.Fatalf("get returned %d bytes, end %v", r.file.Len(), r.end)
	}
	_, res = f.open(t, &wire.SessionOpen{Token: tok, Kind: wire.SessionOpen_KIND_GET, Path: "relative/path"})
	if r := wait(t, res, 10*time.Second); !strings.Contains(r.end.GetError(), "absolute") {
		t.Fatalf("relative get: %v", r.end)
	}
	_, res = f.open(t, &wire.SessionOpen{Token: tok, Kind: wire.SessionOpen_KIND_INVENTORY})
	if r := wait(t, res, 10*time.Second); r.inventory.GetHostname() != "pc-1" {
		t.Fatalf("inventory %v", r.inventory)
	}
}

// A put that can never land is refused before the technician's first
// byte, with what to do instead; one that can still replaces a file.
func TestPutDestination(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, "tina", "berlin")
	dir := t.TempDir()
	file := filepath.Join(dir, "old.txt")
	if err := os.WriteFile(file, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(sub, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(sub, "taken"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, file string // file: the name of the technician's file
		wantErr          string // "": the put succeeds
		wantAt           string // where it lands
	}{
		{"into an existing directory", sub, "fix.sh", "", filepath.Join(sub, "fix.sh")},
		{"into a path ending in a slash", sub + "/", "fix.sh", "", filepath.Join(sub, "fix.sh")},
		{"onto a link to a directory", link, "fix.sh", "is a link to a directory on the host: end the path with /", ""},
		{"into a link to a directory, asked by a slash", link + "/", "fix.sh", "", filepath.Join(sub, "fix.sh")},
		{"existing file is replaced", file, "fix.sh", "", file},
		{"a directory and no name", sub, "", "no usable file name", ""},
		{"a directory and a name with a path", sub, "../evil", "no usable file name", ""},
		{"a directory and the name ..", sub, "..", "no usable file name", ""},
		{"a directory of that name inside", sub, "taken", "is a directory on the host", ""},
		{"new directory ending in a slash", filepath.Join(dir, "new") + "/", "fix.sh", "the directory " + filepath.Join(dir, "new") + " does not exist", ""},
		{"missing parent", filepath.Join(dir, "absent", "fix.sh"), "fix.sh", "the directory " + filepath.Join(dir, "absent") + " does not exist", ""},
		{"parent is a file", filepath.Join(file, "fix.sh"), "fix.sh", file + " is not a directory", ""},
		{"relative", "fix.sh", "fix.sh", "absolute path", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(filepath.Join(sub, "fix.sh"))
			tech, res := f.open(t, &wire.SessionOpen{Token: tok, Kind: wire.SessionOpen_KIND_PUT, Path: tc.path, Name: tc.file, Mode: 0o600})
			if tc.wantErr == "" {
				wire.WriteMsg(tech, &wire.SessionInput{Body: &wire.SessionInput_FileData{FileData: []byte("new")}})
				wire.WriteMsg(tech, &wire.SessionInput{Body: &wire.SessionInput_FileEnd{FileEnd: true}})
			}
			// Nothing is sent for a doomed put: the agent must answer
			// without waiting for the file.
			r := wait(t, res, 5*time.Second)
			if tc.wantErr == "" {
				if got, err := os.ReadFile(tc.wantAt); r.end.GetError() != "" || string(got) != "new" {
					t.Fatalf("put: end %v, file %q (%v)", r.end, got, err)
				}
			} else if !strings.Contains(r.end.GetError(), tc.wantErr) || r.end.GetExitCode() != -1 {
				t.Fatalf("end %v, want an error saying %q", r.end, tc.wantErr)
			}
			for _, d := range []string{dir, sub} {
				if left, _ := filepath.Glob(filepath.Join(d, ".outpost-put-*")); len(left) > 0 {
					t.Fatalf("temporary files left: %v", left)
				}
			}
			if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
				t.Fatalf("the link was replaced: %v %v", st, err)
			}
			if _, err := os.Stat(filepath.Join(dir, "evil")); err == nil {
				t.Fatal("a name with a path escaped the directory")
			}
		})
	}
}

func FuzzSessionOpen(f *testing.F) {
	f.Add([]byte{0, 0, 0, 2, 0x18, 1})
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, _, _ := ed25519.GenerateKey(nil)
		s, err := New(Config{DataDir: t.TempDir(), MemberID: "ag-1", OpenTimeout: 100 * time.Millisecond},
			fixedPolicy{&wire.Policy{TokenKeys: []*wire.TokenKey{{KeyId: wire.KeyID(pub), PublicKey: pub}}}}, fixedInventory{}, logging.Discard(), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		tech, host := net.Pipe()
		done := make(chan struct{})
		go func() { s.Serve(context.Background(), host, func() { host.Close() }); close(done) }()
		go io.Copy(io.Discard, tech) // a pipe does not buffer: read what the host answers
		go func() { tech.Write(b); tech.Close() }()
		<-done
		if s.Live() != 0 {
			t.Fatal("a session without a valid token started")
		}
	})
}

func TestShellQuote(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want string
	}{
		{[]string{"systemctl", "status", "outpost-agent"}, "systemctl status outpost-agent"},
		{[]string{"sh", "-c", "exit 7"}, "sh -c 'exit 7'"},
		{[]string{"echo", "it's", ""}, `echo 'it'\''s' ''`},
		{[]string{"ls", "/tmp/a b", "$HOME"}, "ls '/tmp/a b' '$HOME'"},
	} {
		if got := shellQuote(c.argv); got != c.want {
			t.Errorf("shellQuote(%q) = %s, want %s", c.argv, got, c.want)
		}
	}
}

func TestOutcome(t *testing.T) {
	for _, tc := range []struct {
		kind     wire.SessionOpen_Kind
		code     int32
		err      error
		revoked  bool
		took     time.Duration
		sent     int64
		received int64
		want     string
	}{
		{wire.SessionOpen_KIND_EXEC, 0, nil, false, 1234 * time.Millisecond, 3000, 0, "exit 0 after 1.2s, 2.93 KiB of output"},
		{wire.SessionOpen_KIND_SHELL, 130, nil, false, 5*time.Minute + 2600*time.Millisecond, 0, 0, "exit 130 after 5m3s, 0 B of output"},
		{wire.SessionOpen_KIND_SHELL, -1, context.Canceled, true, time.Second, 10, 0, "ended by a revocation after 1s, 10 B of output"},
		{wire.SessionOpen_KIND_PUT, 0, nil, false, 2 * time.Second, 0, 12 << 20, "done after 2s, 12.0 MiB received"},
		{wire.SessionOpen_KIND_PUT, -1, errors.New("the transfer of /tmp/x stopped before its end: EOF"), false, 300 * time.Millisecond, 0, 1 << 20, "failed after 300ms, 1.00 MiB received: the transfer of /tmp/x stopped before its end: EOF"},
		{wire.SessionOpen_KIND_GET, 0, nil, false, 0, 5 << 30, 0, "done after 0s, 5.00 GiB sent"},
		{wire.SessionOpen_KIND_INVENTORY, -1, errors.New("boom"), false, 0, 0, 0, "failed after 0s: boom"},
	} {
		if got := outcome(tc.kind, tc.code, tc.err, tc.revoked, tc.took, tc.sent, tc.received); got != tc.want {
			t.Errorf("outcome: got %q, want %q", got, tc.want)
		}
	}
}

// fakeActions records what a technician had the host do.
type fakeActions struct {
	mu    sync.Mutex
	calls []string
}

func (a *fakeActions) note(s string) { a.mu.Lock(); a.calls = append(a.calls, s); a.mu.Unlock() }

func (a *fakeActions) Sync(context.Context) (*wire.Report, error) {
	a.note("sync")
	return &wire.Report{Revision: 7, Items: []*wire.ItemReport{{Id: "package:hello", Status: wire.ItemReport_STATUS_COMPLIANT}}}, nil
}

func (a *fakeActions) Reboot(_ context.Context, reason string, delay time.Duration) error {
	a.note(fmt.Sprintf("reboot %v %q", delay, reason))
	return nil
}

func (a *fakeActions) CancelReboot(context.Context) error { a.note("cancel"); return nil }

// Running the policy and rebooting take the control right; a reboot waits
// whole minutes, at most a day, and tells one clipped line of reason.
func TestSyncAndReboot(t *testing.T) {
	f := newFixture(t)
	f.p.Permissions[0].Grants = append(f.p.Permissions[0].Grants, &wire.Grant{Subject: "user:cora", Rights: []wire.Right{wire.Right_RIGHT_CONTROL}})
	tina, cora := f.token(t, "tina", "berlin"), f.token(t, "cora")
	// An agent without actions refuses them, saying so.
	_, res := f.open(t, &wire.SessionOpen{Token: cora, Kind: wire.SessionOpen_KIND_SYNC})
	if r := wait(t, res, 10*time.Second); !strings.Contains(r.end.GetError(), "does not run its policy for technicians") {
		t.Fatalf("sync without actions: %v", r.end)
	}
	acts := &fakeActions{}
	f.s.cfg.Actions = acts
	for _, kind := range []wire.SessionOpen_Kind{wire.SessionOpen_KIND_SYNC, wire.SessionOpen_KIND_REBOOT} {
		_, res := f.open(t, &wire.SessionOpen{Token: tina, Kind: kind})
		if r := wait(t, res, 10*time.Second); !r.end.GetDenied() || !strings.Contains(r.end.GetError(), "needs the control right") {
			t.Fatalf("%v without the control right: %v", kind, r.end)
		}
	}
	_, res = f.open(t, &wire.SessionOpen{Token: cora, Kind: wire.SessionOpen_KIND_SYNC})
	if r := wait(t, res, 10*time.Second); r.end.GetError() != "" || r.report.GetRevision() != 7 || len(r.report.GetItems()) != 1 {
		t.Fatalf("sync: report %v, end %v", r.report, r.end)
	}
	long := strings.Repeat("é", 150)
	for _, open := range []*wire.SessionOpen{
		{Kind: wire.SessionOpen_KIND_REBOOT, DelaySeconds: 30, Reason: "patches\r\nrm -rf /\u009b2J\u202e"},
		{Kind: wire.SessionOpen_KIND_REBOOT, DelaySeconds: 90 * 3600, Reason: long},
		{Kind: wire.SessionOpen_KIND_REBOOT},
		{Kind: wire.SessionOpen_KIND_REBOOT, Cancel: true},
	} {
		open.Token = cora
		_, res := f.open(t, open)
		if r := wait(t, res, 10*time.Second); r.end.GetError() != "" {
			t.Fatalf("reboot %v: %v", open, r.end)
		}
	}
	want := []string{
		"sync",
		`reboot 1m0s "outpost: patches  rm -rf / 2J"`,
		fmt.Sprintf("reboot 24h0m0s %q", "outpost: "+strings.Repeat("é", 100)+"..."),
		`reboot 0s "outpost: a technician reboots this computer"`,
		"cancel",
	}
	acts.mu.Lock()
	defer acts.mu.Unlock()
	if fmt.Sprint(acts.calls) != fmt.Sprint(want) {
		t.Fatalf("actions:\n%q\nwant\n%q", acts.calls, want)
	}
}

// A command runs with what a login sets, though the agent was started
// without it, and knows the technician.
func TestSessionEnvironment(t *testing.T) {
	t.Setenv("HOME", "")
	t.Setenv("USER", "")
	me, err := user.Current()
	if err != nil {
		t.Skip(err)
	}
	f := newFixture(t)
	_, res := f.open(t, &wire.SessionOpen{Token: f.token(t, "tina", "berlin"), Kind: wire.SessionOpen_KIND_EXEC,
		Argv: []string{"/bin/sh", "-c", `echo "$OUTPOST_USER|$USER|$LOGNAME|$HOME|$SHELL"`}})
	r := wait(t, res, 10*time.Second)
	if want := fmt.Sprintf("tina|%s|%s|%s|/bin/sh\n", me.Username, me.Username, me.HomeDir); r.stdout.String() != want {
		t.Fatalf("environment %q, want %q (%v)", r.stdout.String(), want, r.end)
	}
}

// A session token is "spent at once, on opening the session it was signed
// for" (auth.SessionTokenTTL; session.proto: "signs for one session"), and
// it carries a token id for that. Whoever else holds one (it crossed the
// CLI, the coordinator's HTTP answer, the technician's machine) cannot
// open more sessions with it while it lasts.
func TestASessionTokenOpensOneSession(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	tok, err := wire.SignToken(f.key, &wire.AccessToken{User: "tina", Groups: []string{"berlin"}, IssuedUnixMs: now.UnixMilli(),
		ExpiresUnixMs: now.Add(2 * time.Minute).UnixMilli(), TokenId: "st-0001", Audience: "ag-1"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		_, res := f.open(t, &wire.SessionOpen{Token: tok, Kind: wire.SessionOpen_KIND_EXEC, Argv: []string{"/bin/echo", "hi"}})
		r := wait(t, res, 10*time.Second)
		if i == 0 && r.end.GetError() != "" {
			t.Fatalf("the session token's first session: %v", r.end)
		}
		if i == 1 && (!r.end.GetDenied() || !strings.Contains(r.end.GetError(), "used already")) {
			t.Fatalf("the same session token (id st-0001) opened a second session: exit %d %q, error %q; want it refused as already used", r.end.GetExitCode(), r.stdout.String(), r.end.GetError())
		}
	}
}

// The host remembers the ids of session tokens it took until they expire,
// and no more than maxSpentTokens at once: past that it refuses, saying
// so, rather than forget one that could still be used again.
func TestSpentSessionTokensAreBounded(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	f.s.mu.Lock()
	f.s.spent = map[string]int64{}
	for i := range maxSpentTokens {
		f.s.spent[fmt.Sprint("st-", i)] = now.Add(time.Minute).UnixMilli()
	}
	f.s.mu.Unlock()
	at := &wire.AccessToken{User: "tina", TokenId: "st-new", ExpiresUnixMs: now.Add(2 * time.Minute).UnixMilli()}
	if err := f.s.spend(at); err == nil || !strings.Contains(err.Error(), "wait a minute") {
		t.Fatalf("a token past the bound: %v, want refused with what to do", err)
	}
	// Once the tokens remembered expire, they make room.
	f.s.now = func() time.Time { return now.Add(90 * time.Second) }
	if err := f.s.spend(at); err != nil {
		t.Fatalf("after the others expired: %v", err)
	}
	f.s.mu.Lock()
	n := len(f.s.spent)
	f.s.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d token ids remembered, want the new one alone", n)
	}
}

// Session tokens live a minute or two by the coordinator's clock. A host
// whose clock drifted three minutes fast judged each one expired; it
// judges them by the coordinator's time as it last heard it (Config.Now).
func TestSessionTokensAreJudgedByTheCoordinatorsClock(t *testing.T) {
	coordinator := func() time.Time { return time.Now().Add(-3 * time.Minute) }
	tokenAt := func(f *fixture, now time.Time) string {
		tok, err := wire.SignToken(f.key, &wire.AccessToken{User: "tina", Groups: []string{"berlin"}, IssuedUnixMs: now.UnixMilli(),
			ExpiresUnixMs: now.Add(time.Minute).UnixMilli(), Audience: "ag-1"})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	f := newFixtureWith(t, func(c *Config) { c.Now = coordinator })
	_, res := f.open(t, &wire.SessionOpen{Token: tokenAt(f, coordinator()), Kind: wire.SessionOpen_KIND_INVENTORY})
	if r := wait(t, res, 10*time.Second); r.end.GetDenied() || r.inventory.GetHostname() != "pc-1" {
		t.Fatalf("a token the coordinator issued just now, on a host three minutes fast: %v", r.end)
	}
	// Without the coordinator's time the same token is expired.
	g := newFixture(t)
	_, res = g.open(t, &wire.SessionOpen{Token: tokenAt(g, coordinator()), Kind: wire.SessionOpen_KIND_INVENTORY})
	if r := wait(t, res, 10*time.Second); !r.end.GetDenied() {
		t.Fatalf("judged by the host's fast clock, the token was taken: %v", r.end)
	}
}
