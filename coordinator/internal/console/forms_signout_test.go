package console

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// Signing out of the console ends the sign-in at the API too, as
// outpost logout does: the session's refresh token is void afterwards
// and the audit log records the sign-out.
func TestSignOutEndsTheAPISignIn(t *testing.T) {
	e := newEnv(t)
	e.addUser("olga", "correct horse", "operator")
	b := e.signIn("olga", "correct horse")
	s := e.c.sessions.get(sessionRequest(b))
	s.mu.Lock()
	refresh := s.refresh
	s.mu.Unlock()
	if refresh == "" {
		t.Fatal("a password sign-in has no refresh token")
	}
	if res, _ := b.post("/ui/logout", url.Values{}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %d", res.StatusCode)
	}
	if code := e.apiDo("POST", "/v1/login/refresh", map[string]string{"refresh_token": refresh}, nil); code != http.StatusUnauthorized {
		t.Fatalf("the refresh token of a signed-out console session still works: %d, want 401", code)
	}
	var audit struct {
		Events []struct {
			Actor  string `json:"actor"`
			Action string `json:"action"`
		} `json:"events"`
	}
	e.apiDo("GET", "/v1/audit?action=logout&user=olga", nil, &audit)
	if len(audit.Events) == 0 {
		t.Fatal("the console's sign-out is not in the audit log")
	}
}

// countingBody is an endless request body that counts what was read.
type countingBody struct {
	head string
	n    atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	off := c.n.Load()
	if off >= 1<<40 {
		return 0, io.EOF
	}
	k := 0
	if off < int64(len(c.head)) {
		k = copy(p, c.head[off:])
	} else {
		for i := range p {
			p[i] = 'x'
		}
		k = len(p)
	}
	c.n.Add(int64(k))
	return k, nil
}

// A form post is bounded: a multipart body of any size posted to a form
// (not the upload, which streams) is refused after a few MiB rather than
// read to its end and spooled to the coordinator's disk. Any signed-in
// user, a read-only one too, could otherwise fill it.
func TestFormPostBodyIsBounded(t *testing.T) {
	e := newEnv(t)
	e.addUser("rita", "read only pw", "read-only")
	b := e.signIn("rita", "read only pw")
	const boundary = "b0undary"
	body := &countingBody{head: "--" + boundary + "\r\n" +
		`Content-Disposition: form-data; name="csrf"` + "\r\n\r\n" + b.csrf + "\r\n" +
		"--" + boundary + "\r\n" +
		`Content-Disposition: form-data; name="file"; filename="big.bin"` + "\r\n" +
		"Content-Type: application/octet-stream\r\n\r\n"}
	stop := int64(64 << 20)
	req := httptest.NewRequest("POST", "/ui/offices", io.LimitReader(body, stop))
	req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
	req.Header.Set("Origin", "http://"+host)
	res, page := b.do(req)
	if read := body.n.Load(); read >= stop {
		t.Fatalf("the console read the whole %d MiB form body (status %d)", read>>20, res.StatusCode)
	}
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413\n%s", res.StatusCode, page)
	}
	// A form of ordinary size still goes through.
	b.get("/ui/")
	res, page = b.post("/ui/offices", url.Values{"name": {"berlin"}, "mode": {"direct"}, "notes": {strings.Repeat("x", 1<<20)}})
	if res.StatusCode != http.StatusForbidden || !strings.Contains(page, "needs the operator role") {
		t.Fatalf("an ordinary form: %d, want the API's refusal\n%s", res.StatusCode, fmt.Sprint(len(page)))
	}
}
