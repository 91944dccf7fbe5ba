package console

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/api"
)

// answerWait is how long a test waits for an answer that a short
// deadline brings: far beyond those deadlines, so that only a request
// left without one fails.
const answerWait = 10 * time.Second

// serve puts the console on a real listener, for what a connection does.
func (e *env) serve() *httptest.Server {
	e.t.Helper()
	srv := httptest.NewServer(e.c)
	e.t.Cleanup(srv.Close)
	return srv
}

// send writes a request head (its blank line included) and the first
// bytes of its body, which then stops, on a new connection to srv.
func send(t *testing.T, srv *httptest.Server, head, body string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head+body); err != nil {
		t.Fatal(err)
	}
	return c
}

// answerOn reads the response on c, failing the test when none comes
// within answerWait.
func answerOn(t *testing.T, c net.Conn, what string) (int, string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(answerWait))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("%s: no answer after %v: the request holds its connection and goroutine", what, answerWait)
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res.StatusCode, string(b)
}

// head is a request head as the console's pages send it, with the
// session's cookie when there is one.
func (b *browser) head(line string, headers ...string) string {
	h := line + " HTTP/1.1\r\nHost: " + host + "\r\nOrigin: http://" + host + "\r\n"
	if id := b.cookies[sessionCookie]; id != "" {
		h += "Cookie: " + sessionCookie + "=" + id + "\r\n"
	}
	return h + strings.Join(headers, "") + "\r\n"
}

// A form post whose body stops coming — the sign-in form, which needs no
// session, a signed-in user's form, one posted without a session and
// refused unread, the upload form before its file — does not hold its
// connection for ever: it must arrive whole within BodyWait.
func TestAFormThatStopsComingDoesNotHoldItsConnection(t *testing.T) {
	e := newEnvWith(t, nil, func(_ *api.Deps, c *Config) { c.BodyWait = 300 * time.Millisecond })
	srv := e.serve()
	b := e.signIn("", adminToken)
	nobody := e.browser()
	form := "Content-Type: application/x-www-form-urlencoded\r\n"
	multi := "Content-Type: multipart/form-data; boundary=b0undary\r\n"
	for _, tc := range []struct {
		name string
		b    *browser
		line string
		hdrs []string
		body string
		code int
	}{
		{"sign-in form", nobody, "POST /ui/login", []string{form}, "user=ol", 408},
		{"signed-in form", b, "POST /ui/offices", []string{form}, "name=par", 408},
		{"form without a session", nobody, "POST /ui/offices", []string{form}, "name=par", 403},
		{"body nobody reads", nobody, "GET /ui/static/console.css", nil, "", 200},
		{"upload form before its file", b, "POST /ui/artifacts", []string{multi},
			"--b0undary\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n" + b.csrf, 408},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := send(t, srv, tc.b.head(tc.line, append(tc.hdrs, "Content-Length: 1000\r\n")...), tc.body)
			code, page := answerOn(t, c, tc.name)
			if code != tc.code {
				t.Fatalf("%d, want %d\n%s", code, tc.code, page)
			}
			if code == 408 && !strings.Contains(page, "did not arrive") {
				t.Fatalf("408 that does not say the form did not arrive in time:\n%s", page)
			}
		})
	}
}

// An upload through the console that stalls, from the page's script or
// the plain form, is given up once it brought no byte for the API's
// UploadIdle, with an answer that says so; while it streams it has no
// deadline as a whole (BodyWait is long here, and does not apply).
func TestAnUploadThatStallsInTheConsoleIsGivenUp(t *testing.T) {
	e := newEnvWith(t, nil, func(d *api.Deps, c *Config) { d.UploadIdle, c.BodyWait = 300*time.Millisecond, 30*time.Second })
	srv := e.serve()
	b := e.signIn("", adminToken)
	preamble := "--b0undary\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n" + b.csrf + "\r\n" +
		"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n" +
		"Content-Type: application/octet-stream\r\n\r\n"
	for _, tc := range []struct {
		name string
		hdrs []string
		body string
	}{
		{"script", []string{"X-CSRF-Token: " + b.csrf + "\r\n", "Content-Length: 1000\r\n"}, "0123456789"},
		{"form", []string{"Content-Type: multipart/form-data; boundary=b0undary\r\n", "Content-Length: 100000\r\n"}, preamble + "0123456789"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := "POST /ui/artifacts"
			if tc.name == "script" {
				line += "?name=a.bin"
			}
			c := send(t, srv, b.head(line, tc.hdrs...), tc.body)
			code, page := answerOn(t, c, "stalled upload")
			if code != http.StatusRequestTimeout || !strings.Contains(page, "no byte") {
				t.Fatalf("%d, want 408 saying the upload brought no byte\n%s", code, page)
			}
		})
	}
	if e.files.n != 0 {
		t.Fatalf("%d bytes of stalled uploads were stored", e.files.n)
	}
}

// A slow but steady upload through the console's page goes on as long as
// bytes keep coming, for longer than BodyWait and UploadIdle together.
func TestASlowSteadyUploadThroughTheConsoleSucceeds(t *testing.T) {
	e := newEnvWith(t, nil, func(d *api.Deps, c *Config) { d.UploadIdle, c.BodyWait = time.Second, 200*time.Millisecond })
	srv := e.serve()
	b := e.signIn("", adminToken)
	const pieces, size = 50, 1024
	c := send(t, srv, b.head("POST /ui/artifacts?name=slow.bin", "X-CSRF-Token: "+b.csrf+"\r\n", fmt.Sprintf("Content-Length: %d\r\n", pieces*size)), "")
	piece := strings.Repeat("s", size)
	for range pieces {
		time.Sleep(50 * time.Millisecond)
		if _, err := io.WriteString(c, piece); err != nil {
			t.Fatalf("the console stopped taking a steady upload: %v", err)
		}
	}
	if code, page := answerOn(t, c, "slow upload"); code != http.StatusCreated {
		t.Fatalf("slow steady upload: %d\n%s", code, page)
	}
}

// A form upload whose file part ended but whose form never does (no
// closing boundary, the rest of the body never sent) is answered: what
// is left must arrive within BodyWait (net/http reads up to 256 KiB of
// it before answering), the upload's idle limit being over.
func TestAFormUploadWhoseFormNeverEndsIsAnswered(t *testing.T) {
	e := newEnvWith(t, nil, func(d *api.Deps, c *Config) { d.UploadIdle, c.BodyWait = time.Hour, 300*time.Millisecond })
	srv := e.serve()
	b := e.signIn("", adminToken)
	body := "--b0undary\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n" + b.csrf + "\r\n" +
		"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n" +
		"Content-Type: application/octet-stream\r\n\r\n0123456789\r\n--b0undary\r\n"
	c := send(t, srv, b.head("POST /ui/artifacts", "Content-Type: multipart/form-data; boundary=b0undary\r\n", "Content-Length: 1000\r\n"), body)
	if code, page := answerOn(t, c, "form that never ends"); code != http.StatusSeeOther {
		t.Fatalf("%d, want the upload done\n%s", code, page)
	}
}
