package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// testToken is the admin token the fake accepts. It is long and unusual so a
// leak into any output is found by a plain substring search.
const testToken = "opa_s3cr3t-admin-T0KEN-do-not-print"

// testNow is the fixed clock of the tests; API times are given relative to it.
var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// exchange is one request the fake API expects, in order, and its answer.
type exchange struct {
	method string
	target string // path and query as sent: "/v1/agents?office=berlin"
	// body is the expected request body: compared as JSON values when it is
	// JSON, byte for byte otherwise; empty means no body.
	body  string
	ctype string // expected Content-Type, when set
	// status and answer are the response; status 0 is 200.
	status int
	answer string
	// respond, when set, computes the answer from the request body.
	respond func(body []byte) (int, string)
}

// received is a request as the fake saw it.
type received struct {
	method, target string
	header         http.Header
	contentLength  int64
	chunked        bool
	body           []byte
}

// fakeAPI is an httptest stand-in for the coordinator's admin API. It checks
// the admin token on every /v1/ call (answering 401 like the real one) and
// either serves a scripted list of exchanges in order, failing the test on
// anything else, or routes to handlers for tests with changing state.
type fakeAPI struct {
	t    testing.TB
	srv  *httptest.Server
	mu   sync.Mutex
	want []exchange
	next int
	mux  *http.ServeMux
	got  []received
}

// newFakeAPI starts a fake that expects exactly the exchanges given; Cleanup
// checks that each was made.
func newFakeAPI(tb testing.TB, want ...exchange) *fakeAPI {
	tb.Helper()
	f := &fakeAPI{t: tb, want: want}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	tb.Cleanup(func() {
		f.srv.Close()
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.mux == nil && f.next < len(f.want) {
			tb.Errorf("fake API: %d expected request(s) not made, first %s %s", len(f.want)-f.next, f.want[f.next].method, f.want[f.next].target)
		}
	})
	return f
}

// newRoutedAPI starts a fake that serves mux behind the token check.
func newRoutedAPI(tb testing.TB, mux *http.ServeMux) *fakeAPI {
	tb.Helper()
	f := newFakeAPI(tb)
	f.mux = mux
	return f
}

func (f *fakeAPI) URL() string { return f.srv.URL }

func (f *fakeAPI) requests() []received {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]received(nil), f.got...)
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		f.t.Errorf("fake API: read body of %s %s: %v", r.Method, r.URL, err)
		return
	}
	rec := received{method: r.Method, target: r.URL.RequestURI(), header: r.Header.Clone(),
		contentLength: r.ContentLength, chunked: len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked", body: body}
	f.mu.Lock()
	f.got = append(f.got, rec)
	f.mu.Unlock()

	if got := r.Header.Get("Authorization"); got != "Bearer "+testToken {
		writeAnswer(w, http.StatusUnauthorized, `{"error":"missing or wrong admin token"}`)
		return
	}
	if f.mux != nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.mux.ServeHTTP(w, r)
		return
	}
	f.mu.Lock()
	if f.next >= len(f.want) {
		f.mu.Unlock()
		f.t.Errorf("fake API: unexpected request %s %s", r.Method, rec.target)
		writeAnswer(w, http.StatusTeapot, `{"error":"unexpected request"}`)
		return
	}
	x := f.want[f.next]
	f.next++
	f.mu.Unlock()

	if r.Method != x.method || rec.target != x.target {
		f.t.Errorf("fake API: got %s %s, want %s %s", r.Method, rec.target, x.method, x.target)
	}
	if x.ctype != "" && r.Header.Get("Content-Type") != x.ctype {
		f.t.Errorf("fake API: %s %s Content-Type %q, want %q", r.Method, rec.target, r.Header.Get("Content-Type"), x.ctype)
	}
	if !sameBody(body, []byte(x.body)) {
		f.t.Errorf("fake API: %s %s body\n got: %s\nwant: %s", r.Method, rec.target, body, x.body)
	}
	status, answer := x.status, x.answer
	if x.respond != nil {
		status, answer = x.respond(body)
	}
	if status == 0 {
		status = http.StatusOK
	}
	writeAnswer(w, status, answer)
}

func writeAnswer(w http.ResponseWriter, status int, answer string) {
	if answer != "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	io.WriteString(w, answer)
}

// sameBody compares JSON bodies by value and anything else byte for byte.
func sameBody(got, want []byte) bool {
	var g, w any
	if json.Unmarshal(got, &g) == nil && json.Unmarshal(want, &w) == nil {
		return reflect.DeepEqual(g, w)
	}
	return bytes.Equal(got, want)
}

// cliRun is how one CLI run is set up.
type cliRun struct {
	env    map[string]string // added to the defaults; "" removes a default
	stdin  io.Reader
	stderr *terminalWriter // default: a buffer that is no terminal
	now    func() time.Time
}

type cliResult struct {
	code           int
	stdout, stderr string
}

// runCLI runs the CLI against f (nil: no server) with args, with the admin
// token in OUTPOST_TOKEN and a fixed clock unless told otherwise.
func runCLI(tb testing.TB, f *fakeAPI, c cliRun, args ...string) cliResult {
	tb.Helper()
	env := map[string]string{"OUTPOST_TOKEN": testToken}
	if f != nil {
		env["OUTPOST_SERVER"] = f.URL()
	}
	for k, v := range c.env {
		env[k] = v
	}
	var stdout, stderr bytes.Buffer
	var errw io.Writer = &stderr
	if c.stderr != nil {
		errw = c.stderr
	}
	a := newApp(c.stdin, &stdout, errw, func(k string) string { return env[k] })
	a.now = c.now
	if a.now == nil {
		a.now = func() time.Time { return testNow }
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := a.run(ctx, args)
	res := cliResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
	if c.stderr != nil {
		res.stderr = c.stderr.String()
	}
	for _, out := range []string{res.stdout, res.stderr} {
		if strings.Contains(out, testToken) {
			tb.Errorf("the admin token was printed:\n%s", out)
		}
	}
	return res
}

// run is runCLI with the defaults.
func run(tb testing.TB, f *fakeAPI, args ...string) cliResult {
	tb.Helper()
	return runCLI(tb, f, cliRun{}, args...)
}

// terminalWriter is a buffer that says it is a terminal, as os.Stdout is
// when it is one.
type terminalWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *terminalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *terminalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *terminalWriter) IsTerminal() bool { return true }

// steppingClock returns a clock that moves on by step at every reading.
func steppingClock(start time.Time, step time.Duration) func() time.Time {
	var mu sync.Mutex
	t := start
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(step)
		return t
	}
}

// check compares a result with what a table test wants.
type want struct {
	code       int
	stdout     string // exact, unless stdoutJSON is set
	stdoutJSON string // stdout must be this JSON, indented
	stderr     string // exact, unless stderrHas is set
	stderrHas  []string
}

func (w want) check(tb testing.TB, got cliResult) {
	tb.Helper()
	if got.code != w.code {
		tb.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", got.code, w.code, got.stdout, got.stderr)
	}
	if w.stdoutJSON != "" {
		if !sameBody([]byte(got.stdout), []byte(w.stdoutJSON)) {
			tb.Errorf("stdout JSON\n got: %s\nwant: %s", got.stdout, w.stdoutJSON)
		}
		if !strings.HasPrefix(got.stdout, "{\n  \"") || !strings.HasSuffix(got.stdout, "}\n") {
			tb.Errorf("stdout is not indented JSON:\n%s", got.stdout)
		}
	} else if got.stdout != w.stdout {
		tb.Errorf("stdout\n got:\n%s\nwant:\n%s", got.stdout, w.stdout)
	}
	if w.stderrHas != nil {
		for _, s := range w.stderrHas {
			if !strings.Contains(got.stderr, s) {
				tb.Errorf("stderr lacks %q:\n%s", s, got.stderr)
			}
		}
	} else if got.stderr != w.stderr {
		tb.Errorf("stderr\n got:\n%s\nwant:\n%s", got.stderr, w.stderr)
	}
}
