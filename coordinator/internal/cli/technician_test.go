package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/quic-go/quic-go"

	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// The audit table is newest first by when things happened, though a host
// that was offline sends its records late; it names hosts by hostname
// (one listing of the agents) and says where coordinator events came from.
func TestAuditTable(t *testing.T) {
	at := func(d time.Duration) string { return testNow.Add(d).Format(time.RFC3339) }
	show := func(d time.Duration) string { return testNow.Add(d).Local().Format(time.DateTime) }
	// In the order the coordinator stored them: the host's exec of an
	// hour ago arrived last.
	events := `{"events":[
		{"seq":4,"at":"` + at(-time.Hour) + `","actor":"tina","action":"exec","target":"host ag-1111","detail":"exec id (from 10.1.0.9)","allowed":true,"source":"ag-1111"},
		{"seq":3,"at":"` + at(-time.Minute) + `","actor":"admin","action":"agent.move","target":"agent ag-2222","detail":"to office lyon","allowed":true,"source":"coordinator","remote":"10.9.0.1"},
		{"seq":2,"at":"` + at(-2*time.Minute) + `","actor":"tina","action":"login","allowed":true,"source":"coordinator","remote":"10.9.0.2"},
		{"seq":1,"at":"` + at(-3*time.Minute) + `","actor":"tina","action":"connect","target":"host ag-3333","detail":"direct session token","allowed":true,"source":"coordinator","remote":"10.9.0.2"}
	]}`
	// pc-7 is ag-2222's alone; two hosts are called pc-9, so ag-3333
	// keeps its id; ag-1111 was removed since.
	agents := `{"agents":[{"id":"ag-2222","hostname":"pc-7"},{"id":"ag-3333","hostname":"pc-9"},{"id":"ag-4444","hostname":"PC-9"}]}`
	f := newFakeAPI(t,
		exchange{method: "GET", target: "/v1/audit?limit=100", answer: events},
		exchange{method: "GET", target: "/v1/agents", answer: agents},
	)
	rows := [][]string{
		{"TIME", "USER", "ACTION", "ALLOWED", "WHERE", "SOURCE", "DETAIL"},
		{show(-time.Minute), "admin", "agent.move", "yes", "agent pc-7", "10.9.0.1", "to office lyon"},
		{show(-2 * time.Minute), "tina", "login", "yes", "-", "10.9.0.2", ""},
		{show(-3 * time.Minute), "tina", "connect", "yes", "host ag-3333", "10.9.0.2", "direct session token"},
		{show(-time.Hour), "tina", "exec", "yes", "host ag-1111", "-", "exec id (from 10.1.0.9)"},
	}
	var b bytes.Buffer
	tw := newTable(&b)
	for _, r := range rows {
		tw.Write([]byte(strings.Join(r, "\t") + "\n"))
	}
	tw.Flush()
	want{stdout: b.String()}.check(t, run(t, f, "audit"))

	// No record names a host: the agents are not listed.
	f = newFakeAPI(t, exchange{method: "GET", target: "/v1/audit?action=login&limit=100",
		answer: `{"events":[{"seq":2,"at":"` + at(-2*time.Minute) + `","actor":"tina","action":"login","allowed":true,"source":"coordinator","remote":"10.9.0.2"}]}`})
	res := run(t, f, "audit", "--action", "login")
	if res.code != 0 || !strings.Contains(res.stdout, "10.9.0.2") {
		t.Errorf("audit --action login: %+v", res)
	}

	// Nothing found: a typo of an action is pointed out.
	for action, says := range map[string]string{
		"exce":     `no records: the audit trail has no action "exce" (did you mean "exec"?); see outpost help audit` + "\n",
		"exec.end": "no records match\n",
		"user":     "no records match\n",
		"backup":   "no records match\n",
	} {
		f = newFakeAPI(t, exchange{method: "GET", target: "/v1/audit?action=" + url.QueryEscape(action) + "&limit=100", answer: `{"events":[]}`})
		if res := run(t, f, "audit", "--action", action); res.code != 0 || res.stderr != says || res.stdout != "" {
			t.Errorf("audit --action %s with no records: %+v, want %q", action, res, says)
		}
	}
}

// What a record holds cannot act on the admin's terminal nor forge rows or
// columns of the table, even a record stored before the coordinator
// escaped what hosts and technicians sent: controls are written out.
func TestAuditTableShowsControlsWrittenOut(t *testing.T) {
	at := testNow.Add(-time.Minute).Format(time.RFC3339)
	evil := `\u001b[2J\r\n2031-01-01 00:00:00\tadmin\u001b]0;pwned\u0007\u202e`
	events := `{"events":[{"seq":1,"at":"` + at + `","actor":"local:eve` + evil + `","action":"exec` + evil + `","target":"pc-1` + evil + `","detail":"exec ` + evil + `","allowed":false,"source":"ag-1111","remote":"10.0.0.1` + evil + `"}]}`
	f := newFakeAPI(t, exchange{method: "GET", target: "/v1/audit?limit=100", answer: events})
	res := run(t, f, "audit")
	if res.code != 0 {
		t.Fatalf("audit: %+v", res)
	}
	lines := strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want the header and one row:\n%s", len(lines), res.stdout)
	}
	for _, c := range res.stdout {
		if c != '\n' && c != ' ' && !unicode.IsPrint(c) {
			t.Fatalf("the table carries %U:\n%q", c, res.stdout)
		}
	}
	if !strings.Contains(lines[1], `exec \x1b[2J\r\n2031-01-01 00:00:00\tadmin\x1b]0;pwned\x07\u202e`) {
		t.Errorf("row %q, want the detail with its controls written out", lines[1])
	}
}

// The coordinator's own audit records carry the address a sign-in came
// from, and the table shows it.
func TestAuditSourceFromCoordinator(t *testing.T) {
	c := coordinatortest.New(t)
	c.MustDo("POST", "/v1/users", map[string]any{"name": "tina", "password": "tina-password-1"}, nil)
	if res := newSignedIn(t, c).run("tina-password-1\n", "login", "tina", "--password-stdin"); res.code != 0 {
		t.Fatalf("login: %+v", res)
	}
	admin := newSignedIn(t, c)
	admin.env["OUTPOST_TOKEN"] = c.Token
	res := admin.run("", "audit", "--action", "login")
	if res.code != 0 || !regexp.MustCompile(`(?m)^TIME +USER +ACTION +ALLOWED +WHERE +SOURCE +DETAIL$`).MatchString(res.stdout) ||
		!regexp.MustCompile(`(?m) tina +login +yes +- +127\.0\.0\.1 *$`).MatchString(res.stdout) {
		t.Errorf("audit --action login: %+v", res)
	}
}

// A flag after HOST that exec does not know was meant for the command:
// the user is told to put -- before it.
func TestExecFlagsNeedDoubleDash(t *testing.T) {
	hint := "to pass flags to the command, put -- before it: "
	tests := []struct {
		args []string
		has  string // "" for the plain error
	}{
		{[]string{"exec", "pc-7", "ls", "-la"}, "outpost: exec: -la is not a flag of outpost exec: " + hint + "outpost exec pc-7 -- ls -la\n"},
		{[]string{"exec", "pc-7", "-la"}, hint + "outpost exec pc-7 -- -la\n"},
		{[]string{"exec", "--stdin", "pc-7", "--timeout", "5s", "tar", "x", "-C", "/tmp/a b"}, hint + "outpost exec --stdin pc-7 --timeout 5s -- tar x -C '/tmp/a b'\n"},
		// Before HOST, or with -- already there, it is outpost's own.
		{[]string{"exec", "-la", "pc-7", "ls"}, ""},
		{[]string{"exec", "pc-7", "--stdn", "--", "id"}, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			res := run(t, nil, tt.args...)
			if res.code != 2 {
				t.Errorf("exit %d, want 2", res.code)
			}
			if tt.has == "" {
				if !strings.Contains(res.stderr, "flag provided but not defined") || strings.Contains(res.stderr, hint) {
					t.Errorf("stderr:\n%s", res.stderr)
				}
			} else if !strings.Contains(res.stderr, tt.has) {
				t.Errorf("stderr lacks %q:\n%s", tt.has, res.stderr)
			}
		})
	}
}

// outpost login says how long the sign-in lasts (the refresh token's
// life), not the access token's ten minutes, which the CLI renews.
func TestLoginSaysHowLongTheSignInLasts(t *testing.T) {
	c := coordinatortest.New(t)
	c.MustDo("POST", "/v1/users", map[string]any{"name": "tina", "password": "tina-password-1"}, nil)
	c.MustDo("POST", "/v1/groups", map[string]any{"name": "berlin-techs", "members": []string{"tina"}}, nil)
	tina := newSignedIn(t, c)
	res := tina.run("tina-password-1\n", "login", "tina", "--password-stdin")
	line := regexp.MustCompile(`^signed in as tina \(technician; groups berlin-techs\) on ` + regexp.QuoteMeta(c.URL) +
		` until \d\d:\d\d( tomorrow)? \(12h\); the CLI renews its token by itself, which extends the sign-in\n$`)
	if res.code != 0 || !line.MatchString(res.stdout) {
		t.Fatalf("login: %+v", res)
	}
	b, err := os.ReadFile(filepath.Join(tina.env["OUTPOST_CONFIG_DIR"], "credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	var kept credentials
	if err := json.Unmarshal(b, &kept); err != nil {
		t.Fatal(err)
	}
	if d := time.Until(kept.RefreshExpires); d < 11*time.Hour || d > 12*time.Hour {
		t.Errorf("refresh_expires in %v, want about 12h (access token: %v)", d, time.Until(kept.Expires))
	}
}

func TestSignInEnd(t *testing.T) {
	now := time.Date(2025, 6, 1, 15, 12, 30, 0, time.Local)
	tests := []struct {
		end  time.Time
		want string
	}{
		{now.Add(12 * time.Hour), "03:12 tomorrow (12h)"},
		{now.Add(2 * time.Hour), "17:12 (2h)"},
		{now.Add(3 * 24 * time.Hour), "Wed 4 Jun 15:12 (72h)"},
	}
	for _, tt := range tests {
		if got := signInEnd(now, tt.end); got != tt.want {
			t.Errorf("signInEnd(%v) = %q, want %q", tt.end, got, tt.want)
		}
	}
}

// A refused refresh says "sign in again" once, not the coordinator's and
// the CLI's both.
func TestRefreshRefusalSaysSignInAgainOnce(t *testing.T) {
	c := coordinatortest.New(t, coordinatortest.WithConfig(func(cfg *coordinator.Config) {
		cfg.AccessTokenTTL = 30 * time.Second // under a minute: every command refreshes
	}))
	c.MustDo("POST", "/v1/users", map[string]any{"name": "olga", "password": "olga-password-1", "role": "read-only"}, nil)
	olga := newSignedIn(t, c)
	if res := olga.run("olga-password-1\n", "login", "olga", "--password-stdin"); res.code != 0 {
		t.Fatalf("login: %+v", res)
	}
	path := filepath.Join(olga.env["OUTPOST_CONFIG_DIR"], "credentials.json")
	copied, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if res := olga.run("", "logout"); res.code != 0 {
		t.Fatalf("logout: %+v", res)
	}
	if err := os.WriteFile(path, copied, 0o600); err != nil {
		t.Fatal(err)
	}
	res := olga.run("", "office", "list")
	want{code: 1, stderrHas: []string{"refused the sign-in of olga kept by outpost login (refresh token is not valid): ", "sign in again with: outpost login olga\n"}}.check(t, res)
	if n := strings.Count(res.stderr, "sign in again"); n != 1 {
		t.Errorf("\"sign in again\" %d times:\n%s", n, res.stderr)
	}
}

// fakeBroker is a QUIC endpoint that stands in for the coordinator's
// technician port: each session stream gets the SessionOpen read, then
// serve's treatment.
type fakeBroker struct {
	addr, fingerprint string
}

func newFakeBroker(t *testing.T, serve func(conn *quic.Conn, str *quic.Stream, open *wire.SessionOpen)) *fakeBroker {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, DNSNames: []string{tlsutil.ServerName},
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos: []string{wire.ALPNTechnician}, MinVersion: tls.VersionTLS13}, &quic.Config{MaxIdleTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				str, err := conn.AcceptStream(context.Background())
				if err != nil {
					return
				}
				var open wire.SessionOpen
				if err := wire.ReadMsg(str, &open); err != nil {
					return
				}
				serve(conn, str, &open)
			}()
		}
	}()
	return &fakeBroker{addr: ln.Addr().String(), fingerprint: tlsutil.Fingerprint(der)}
}

// technician is someone signed in (as the kept file says) whose sessions
// go to b.
func (b *fakeBroker) technician(t *testing.T) *signedIn {
	t.Helper()
	dir := t.TempDir()
	c := &credentials{Server: "http://127.0.0.1:1", User: "tina", AccessToken: "ott1.x", RefreshToken: "otr_x",
		Expires: time.Now().Add(time.Hour), CAFingerprint: b.fingerprint, QUICAddr: b.addr}
	if err := saveCredentials(filepath.Join(dir, "credentials.json"), c); err != nil {
		t.Fatal(err)
	}
	return &signedIn{tb: t, env: map[string]string{"OUTPOST_CONFIG_DIR": dir, "OUTPOST_VIA": "coordinator"}}
}

func sendOutput(str *quic.Stream, m *wire.SessionOutput) { _ = wire.WriteMsg(str, m) }

// A host that ends a session for a revocation says "session ended" itself:
// the user reads it once.
func TestRevokedSessionSaysItOnce(t *testing.T) {
	b := newFakeBroker(t, func(conn *quic.Conn, str *quic.Stream, open *wire.SessionOpen) {
		sendOutput(str, &wire.SessionOutput{Body: &wire.SessionOutput_Accepted{Accepted: &wire.SessionAccepted{User: "tina"}}})
		sendOutput(str, &wire.SessionOutput{Body: &wire.SessionOutput_End{End: &wire.SessionEnd{ExitCode: -1,
			Error: "session ended: your access was revoked by the coordinator", Revoked: true}}})
		str.Close()
	})
	res := b.technician(t).run("", "exec", "pc-7", "--", "sleep", "60")
	want{code: 1, stderr: "outpost: exec: pc-7 ended the session: your access was revoked by the coordinator\n"}.check(t, res)
}

// A coordinator that goes away in the middle of a session (a restart) is
// named as a lost connection, with what the user should check, not as a
// QUIC error.
func TestSessionLostMidway(t *testing.T) {
	b := newFakeBroker(t, func(conn *quic.Conn, str *quic.Stream, open *wire.SessionOpen) {
		sendOutput(str, &wire.SessionOutput{Body: &wire.SessionOutput_Accepted{Accepted: &wire.SessionAccepted{User: "tina"}}})
		sendOutput(str, &wire.SessionOutput{Body: &wire.SessionOutput_Stdout{Stdout: []byte("half\n")}})
		time.Sleep(100 * time.Millisecond)
		conn.CloseWithError(0, "") // as a stopping coordinator does
	})
	tina := b.technician(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"exec", "pc-7", "--", "apt-get", "upgrade"}, "outpost: exec: the connection to the coordinator was lost during the command (the other end closed it, as it does when it stops): it may or may not have taken effect on pc-7; check there (outpost connect pc-7) and try again\n"},
		{[]string{"cp", "pc-7:/etc/hosts", filepath.Join(t.TempDir(), "hosts")}, "outpost: cp: the connection to the coordinator was lost during the copy from pc-7:/etc/hosts (the other end closed it, as it does when it stops): nothing was written here; try again\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			res := tina.run("", tt.args...)
			if res.code != 1 || res.stderr != tt.want {
				t.Errorf("exit %d, stderr\n got: %q\nwant: %q", res.code, res.stderr, tt.want)
			}
			if strings.Contains(res.stderr, "Application error") || strings.Contains(res.stderr, "wire.") {
				t.Errorf("a raw error is shown: %s", res.stderr)
			}
		})
	}
}

// An API call whose connection is cut before the answer names the request:
// a change may or may not have been made, a read changes nothing.
func TestAPICallLostMidway(t *testing.T) {
	reset := func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0) // a reset, as from a coordinator killed mid-request
		}
		conn.Close()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/offices", reset)
	mux.HandleFunc("GET /v1/offices", reset)
	f := newRoutedAPI(t, mux)

	res := run(t, f, "office", "add", "berlin")
	want{code: 1, stderrHas: []string{"outpost: office add: the connection to the coordinator at " + f.URL() + " was lost during POST /v1/offices",
		": it may or may not have taken effect; check with outpost office list and try again\n"}}.check(t, res)

	res = run(t, f, "office", "list")
	want{code: 1, stderrHas: []string{"outpost: office list: the connection to the coordinator at " + f.URL() + " was lost during GET /v1/offices",
		": try again (a read changes nothing)\n"}}.check(t, res)
	if strings.Contains(res.stderr, "read tcp") || strings.Contains(res.stderr, "EOF") {
		t.Errorf("a raw error is shown: %s", res.stderr)
	}
}

// A command longer than a session takes is refused with the reason before
// anything is dialled, not by a stream the far end closes.
func TestExecTooLongForASession(t *testing.T) {
	res := run(t, nil, "exec", "pc-7", "--", "/bin/sh", "-c", strings.Repeat("x", 300<<10))
	if res.code != 2 || !strings.Contains(res.stderr, "too long for a session") || !strings.Contains(res.stderr, "outpost cp") {
		t.Fatalf("exit %d:\n%s", res.code, res.stderr)
	}
	// One that fits goes on, to the sign-in.
	res = run(t, nil, "exec", "pc-7", "--", "/bin/sh", "-c", strings.Repeat("x", 100<<10))
	if strings.Contains(res.stderr, "too long") {
		t.Fatalf("a 100 KiB command refused:\n%s", res.stderr)
	}
}

// A coordinator that does not answer over QUIC (stopped, or its port
// closed to the user) is named as such, with what is left: break-glass.
func TestCoordinatorNotAnsweringOverQUIC(t *testing.T) {
	b := newFakeBroker(t, func(*quic.Conn, *quic.Stream, *wire.SessionOpen) {})
	// A UDP port nothing answers on.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	b.addr = pc.LocalAddr().String()
	res := b.technician(t).run("", "exec", "pc-7", "--", "true")
	if res.code != 1 || !strings.Contains(res.stderr, "cannot reach the coordinator at "+b.addr+" (no answer over QUIC)") || strings.Contains(res.stderr, "no recent network activity") {
		t.Fatalf("exec with the coordinator silent: %+v", res)
	}
}
