package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// answerWait is how long a test waits for an answer that a short
// deadline brings: far beyond those deadlines, so that only a request
// left without one fails.
const answerWait = 10 * time.Second

// sendHead opens a connection to srv and writes the request head (request
// line and headers, the blank line included) and the first bytes of its
// body, which then stops.
func sendHead(t *testing.T, srv *httptest.Server, head, body string) net.Conn {
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

// answer reads the response on c, failing the test when none comes
// within answerWait.
func answer(t *testing.T, c net.Conn, what string) (int, string) {
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

// A request body that stops coming, before or after authentication, on
// any route, does not hold its connection for ever: net/http reads what a
// handler left unread (up to 256 KiB) before it answers, and policy YAML
// and patch feeds were read without the deadline JSON bodies had.
func TestABodyThatStopsComingDoesNotHoldItsConnection(t *testing.T) {
	srv, _, _ := newAPI(t)
	apiOf(t, srv).d.BodyWait = 300 * time.Millisecond
	if code, out := call(t, srv, "POST", "/v1/offices", `{"name":"lyon"}`, token); code != 201 {
		t.Fatal(code, out)
	}
	auth := "Authorization: Bearer " + token + "\r\n"
	for _, tc := range []struct {
		name, line, auth, body string
		code                   int
	}{
		{"unauthenticated JSON", "POST /v1/offices", "", `{"na`, 401},
		{"unauthenticated upload", "POST /v1/artifacts?name=a.bin", "", "abc", 401},
		{"unauthenticated body nobody reads", "GET /healthz", "", "", 200},
		{"policy YAML", "PUT /v1/offices/lyon/policy", auth, "items:\n", 408},
		{"patch feed", "POST /v1/patches/import", auth, "patches:\n", 408},
		{"JSON", "POST /v1/offices", auth, `{"na`, 408},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := sendHead(t, srv, tc.line+" HTTP/1.1\r\nHost: x\r\n"+tc.auth+"Content-Length: 100\r\n\r\n", tc.body)
			code, body := answer(t, c, tc.name)
			if code != tc.code {
				t.Fatalf("%d %s; want %d", code, body, tc.code)
			}
			if code == 408 && !strings.Contains(body, "did not arrive") {
				t.Fatalf("%d %s; want it to say the body did not arrive in time", code, body)
			}
		})
	}
}

// An upload has no deadline as a whole (16 GiB take hours on a slow
// line), but one that brings nothing for UploadIdle is given up with an
// answer that says so, not held for ever.
func TestAnUploadThatStallsIsGivenUp(t *testing.T) {
	srv, _, _ := newAPI(t)
	a := apiOf(t, srv)
	a.d.BodyWait, a.d.UploadIdle = 10*time.Second, 300*time.Millisecond
	for _, tc := range []struct{ name, framing, body string }{
		{"known length", "Content-Length: 1000\r\n", "0123456789"},
		{"chunked", "Transfer-Encoding: chunked\r\n", "a\r\n0123456789\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := sendHead(t, srv, "POST /v1/artifacts?name=a.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+token+"\r\n"+tc.framing+"\r\n", tc.body)
			code, body := answer(t, c, "stalled upload")
			if code != http.StatusRequestTimeout || !strings.Contains(body, "no byte") {
				t.Fatalf("%d %s; want 408 saying the upload brought no byte", code, body)
			}
		})
	}
	if code, out := call(t, srv, "GET", "/v1/artifacts", "", token); code != 200 || len(out["artifacts"].([]any)) != 0 {
		t.Fatalf("a stalled upload was stored: %d %v", code, out)
	}
}

// A slow but steady upload goes on as long as bytes keep coming: it is
// the idle time that is bounded, not the whole (here the upload takes
// several times BodyWait and UploadIdle; each pause is a twentieth of
// UploadIdle).
func TestASlowSteadyUploadSucceeds(t *testing.T) {
	srv, _, _ := newAPI(t)
	a := apiOf(t, srv)
	a.d.BodyWait, a.d.UploadIdle = 200*time.Millisecond, time.Second
	const pieces, size = 50, 1024
	c := sendHead(t, srv, fmt.Sprintf("POST /v1/artifacts?name=slow.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", token, pieces*size), "")
	piece := strings.Repeat("s", size)
	for range pieces {
		time.Sleep(50 * time.Millisecond)
		if _, err := io.WriteString(c, piece); err != nil {
			t.Fatalf("the server stopped taking a steady upload: %v", err)
		}
	}
	if code, body := answer(t, c, "slow upload"); code != http.StatusCreated {
		t.Fatalf("slow steady upload: %d %s", code, body)
	}
}

// Over HTTP/2 (the HTTPS listener speaks it) a stream's body is bounded
// as over HTTP/1.1: a JSON body within BodyWait, an upload's reads
// within UploadIdle each.
func TestBodiesThatStopComingOverHTTP2(t *testing.T) {
	srv, _, _ := newAPI(t) // for its handler
	a := apiOf(t, srv)
	a.d.BodyWait, a.d.UploadIdle = 300*time.Millisecond, 300*time.Millisecond
	h2 := httptest.NewUnstartedServer(a)
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(h2.Close)
	client := h2.Client()
	client.Timeout = answerWait
	for _, tc := range []struct{ name, method, path, body string }{
		{"JSON", "POST", "/v1/offices", `{"na`},
		{"upload", "POST", "/v1/artifacts?name=a.bin", "0123456789"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			t.Cleanup(func() { pw.Close() })
			go io.WriteString(pw, tc.body) // and then nothing more
			req, _ := http.NewRequest(tc.method, h2.URL+tc.path, pr)
			req.Header.Set("Authorization", "Bearer "+token)
			res, err := client.Do(req)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.ProtoMajor != 2 || res.StatusCode != http.StatusRequestTimeout {
				t.Fatalf("%s %d %s; want HTTP/2 408", res.Proto, res.StatusCode, b)
			}
		})
	}
}

// failingFiles is a file server that fails an upload after its first
// bytes, as one that goes away does.
type failingFiles struct{ hashingUploader }

func (*failingFiles) Upload(_ context.Context, r io.Reader, _ int64) (string, int64, error) {
	var b [10]byte
	_, _ = io.ReadFull(r, b[:])
	return "", 0, errors.New("connection reset by the file server")
}

// An upload the file server fails before its body ended is answered
// even when the client then stops sending: what is left of the body
// (net/http reads up to 256 KiB of it before answering) must arrive
// within BodyWait again, the upload's idle limit being over.
func TestAnUploadTheFileServerFailsDoesNotHoldItsConnection(t *testing.T) {
	srv, _, _ := newAPI(t)
	a := apiOf(t, srv)
	a.d.Files = &failingFiles{}
	a.d.BodyWait, a.d.UploadIdle = 300*time.Millisecond, time.Hour
	c := sendHead(t, srv, "POST /v1/artifacts?name=a.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+token+"\r\nContent-Length: 1000\r\n\r\n", "0123456789")
	if code, body := answer(t, c, "upload the file server failed"); code != http.StatusBadGateway {
		t.Fatalf("%d %s; want 502", code, body)
	}
}
