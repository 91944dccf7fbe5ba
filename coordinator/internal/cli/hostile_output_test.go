package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/wire"
)

// runOnTerminal is s.run with standard error a terminal, as it is when a
// technician types the command.
func (s *signedIn) runOnTerminal(args ...string) cliResult {
	s.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout bytes.Buffer
	stderr := &terminalWriter{}
	code := Main(ctx, args, strings.NewReader(""), &stdout, stderr, func(k string) string { return s.env[k] })
	return cliResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// printable fails unless out holds only printable characters, spaces and
// line ends.
func printable(t *testing.T, what, out string) {
	t.Helper()
	for _, c := range out {
		if c != '\n' && c != ' ' && !unicode.IsPrint(c) {
			t.Fatalf("%s carries %U:\n%q", what, c, out)
		}
	}
}

// A host says how big a file is and then sends what it likes: one that
// sends more than it said must not crash the technician's outpost (the
// progress bar on a terminal drew more than its width).
func TestCopyFromAHostThatSendsMoreThanItSaidDoesNotCrash(t *testing.T) {
	b := newFakeBroker(t, func(conn *quic.Conn, str *quic.Stream, open *wire.SessionOpen) {
		sendOutput(str, &wire.SessionOutput{Body: &wire.SessionOutput_Accepted{Accepted: &wire.SessionAccepted{User: "tina"}}})
		sendOutput(str, &wire.SessionOutput{Body: &wire.SessionOutput_FileInfo{FileInfo: &wire.FileInfo{Mode: 0o644, Size: 1}}})
		sendOutput(str, &wire.SessionOutput{Body: &wire.SessionOutput_FileData{FileData: bytes.Repeat([]byte("x"), 1000)}})
		sendOutput(str, &wire.SessionOutput{Body: &wire.SessionOutput_FileEnd{FileEnd: true}})
		sendOutput(str, &wire.SessionOutput{Body: &wire.SessionOutput_End{End: &wire.SessionEnd{}}})
		str.Close()
	})
	res := b.technician(t).runOnTerminal("cp", "pc-7:/etc/hosts", filepath.Join(t.TempDir(), "hosts"))
	if res.code != 0 {
		t.Fatalf("cp: %+v", res)
	}
}

// outpost sync prints what the host reported: the items needing a reboot
// are the host's words too, and must not act on the technician's
// terminal (an OSC 52 write to the clipboard here) or forge lines.
func TestSyncShowsRebootItemsWrittenOut(t *testing.T) {
	evil := "package/x\x1b]52;c;cm0gLXJmIH4K\x07\nall items compliant"
	b := newFakeBroker(t, func(conn *quic.Conn, str *quic.Stream, open *wire.SessionOpen) {
		sendOutput(str, &wire.SessionOutput{Body: &wire.SessionOutput_Accepted{Accepted: &wire.SessionAccepted{User: "tina"}}})
		rep, _ := proto.Marshal(&wire.Report{Revision: 3, AtUnix: time.Now().Unix(), RebootItems: []string{evil}, RebootSinceUnix: time.Now().Unix()})
		sendOutput(str, &wire.SessionOutput{Body: &wire.SessionOutput_Report{Report: rep}})
		sendOutput(str, &wire.SessionOutput{Body: &wire.SessionOutput_End{End: &wire.SessionEnd{}}})
		str.Close()
	})
	res := b.technician(t).run("", "sync", "pc-7")
	if res.code != 0 || !strings.Contains(res.stdout, "waiting for a reboot") {
		t.Fatalf("sync: %+v", res)
	}
	printable(t, "sync's output", res.stdout)
	if n := strings.Count(res.stdout, "\n"); n != 2 {
		t.Errorf("%d lines, want the summary and the reboot line:\n%s", n, res.stdout)
	}
}

// Why a host ended a session is the host's word, printed as outpost's own
// error: it must not act on the technician's terminal, whatever the
// command (here one that shows no output of the host).
func TestSessionEndErrorOfAHostIsWrittenOut(t *testing.T) {
	evil := "disk full\x1b]0;owned\x07\x1b[2J\r\noutpost: inventory: all good"
	for _, end := range []*wire.SessionEnd{
		{ExitCode: 1, Error: evil},
		{ExitCode: -1, Error: "session ended: " + evil, Revoked: true},
		{ExitCode: -1, Error: evil, Denied: true},
		{ExitCode: -1, Error: "no enrolled host is called " + evil, Reason: wire.SessionEnd_REASON_UNKNOWN_HOST},
	} {
		b := newFakeBroker(t, func(conn *quic.Conn, str *quic.Stream, open *wire.SessionOpen) {
			if !end.GetDenied() && end.GetReason() != wire.SessionEnd_REASON_UNKNOWN_HOST {
				sendOutput(str, &wire.SessionOutput{Body: &wire.SessionOutput_Accepted{Accepted: &wire.SessionAccepted{User: "tina"}}})
			}
			sendOutput(str, &wire.SessionOutput{Body: &wire.SessionOutput_End{End: end}})
			str.Close()
		})
		res := b.technician(t).run("", "inventory", "pc-7")
		if res.code == 0 || !strings.Contains(res.stderr, "outpost: inventory: ") {
			t.Fatalf("inventory: %+v", res)
		}
		printable(t, "the error", res.stderr)
		if n := strings.Count(res.stderr, "\n"); n != 1 {
			t.Errorf("%d lines, want one:\n%s", n, res.stderr)
		}
	}
}

// recorder is a server that keeps what reached it.
type recorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	auth []string
	body []string
}

func newRecorder(t *testing.T, ip string) *recorder {
	t.Helper()
	r := &recorder{}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.auth = append(r.auth, req.Header.Get("Authorization"))
		r.body = append(r.body, string(b))
		r.mu.Unlock()
		writeAnswer(w, 200, `{"offices":[]}`)
	}))
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Skip("cannot listen on", ip, err)
	}
	r.srv.Listener.Close()
	r.srv.Listener = ln
	r.srv.Start()
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) got() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.auth, " ") + " " + strings.Join(r.body, " ")
}

// redirector answers every request with a redirect of the same method to
// the same path on to.
func redirector(t *testing.T, to string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, to+req.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// The admin token goes to the coordinator --server names and to no other
// server: not to one a redirect points at, though it be on the same
// machine (Go's client sends the Authorization header on to another port
// or scheme of the same host name, and to its subdomains).
func TestTokenGoesOnlyToTheServerNamed(t *testing.T) {
	other := newRecorder(t, "127.0.0.1")
	res := runCLI(t, nil, cliRun{env: map[string]string{"OUTPOST_SERVER": redirector(t, other.srv.URL)}}, "office", "list")
	if !strings.Contains(res.stderr, "--server") {
		t.Errorf("stderr does not say what to do: %q", res.stderr)
	}
	if got := other.got(); strings.Contains(got, testToken) {
		t.Errorf("the token reached %s, where the coordinator redirected: %q (exit %d, %s)", other.srv.URL, got, res.code, res.stderr)
	}
}

// A password goes to the coordinator signed in to alone: a 307 redirect
// makes Go's client send the same body to wherever it points, another
// host included.
func TestPasswordGoesOnlyToTheServerNamed(t *testing.T) {
	other := newRecorder(t, "127.0.0.2")
	env := map[string]string{"OUTPOST_SERVER": redirector(t, other.srv.URL), "OUTPOST_CONFIG_DIR": t.TempDir(), "OUTPOST_TOKEN": ""}
	res := runCLI(t, nil, cliRun{env: env, stdin: strings.NewReader("tina-secret-pw\n")}, "login", "tina", "--password-stdin")
	if got := other.got(); strings.Contains(got, "tina-secret-pw") {
		t.Errorf("the password reached %s, where the coordinator redirected: %q (exit %d, %s)", other.srv.URL, got, res.code, res.stderr)
	}
}

// An artifact named by a name that two artifacts have is met with the
// start of each one's SHA-256, however short the coordinator's answer
// makes it (an older or odd coordinator): an error, not a crash.
func TestArtifactNamedTwiceWithShortHashesDoesNotCrash(t *testing.T) {
	f := newFakeAPI(t, exchange{method: "GET", target: "/v1/artifacts",
		answer: `{"artifacts":[{"sha256":"ab","name":"hello.tar.gz"},{"sha256":"","name":"hello.tar.gz"}]}`})
	res := run(t, f, "artifact", "show", "hello.tar.gz")
	if res.code != 2 || !strings.Contains(res.stderr, "matches 2 artifacts") {
		t.Errorf("artifact show: %+v", res)
	}
}
