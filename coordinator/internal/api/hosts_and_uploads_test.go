package api

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/artifacts"
	"github.com/outposthq/outpost/coordinator/internal/store"
)

// tooLargeFiles is a file server whose size limit every upload exceeds.
type tooLargeFiles struct{ hashingUploader }

func (*tooLargeFiles) Upload(_ context.Context, r io.Reader, _ int64) (string, int64, error) {
	_, _ = io.Copy(io.Discard, r)
	return "", 0, &artifacts.TooLargeError{Max: 16}
}

// An artifact over the file server's size limit is the uploader's to fix
// (a smaller file, or max_size raised): 413 saying so, not 502 "the file
// server failed", which a client takes for a fault to retry.
func TestArtifactOverTheSizeLimitIs413(t *testing.T) {
	srv, _, _ := newAPI(t)
	apiOf(t, srv).d.Files = &tooLargeFiles{}
	code, out := call(t, srv, "POST", "/v1/artifacts?name=big.tar.gz", strings.Repeat("x", 64), token)
	if code != 413 || !strings.Contains(out["error"].(string), "larger than the limit") {
		t.Fatalf("upload over the limit: %d %v; want 413 saying the artifact is larger than the limit", code, out)
	}
}

// A technician asking for a host it has no right on, by /reach or for a
// session token, is refused as the broker refuses a session to it — and,
// as the broker does, the coordinator records the refusal: probing host
// names over HTTP must leave the same trace as over QUIC.
func TestRefusedReachAndSessionTokenAreAudited(t *testing.T) {
	x := newAuthAPI(t)
	for _, o := range []string{"hq", "paris"} {
		if err := x.st.CreateOffice(store.Office{Name: o}); err != nil {
			t.Fatal(err)
		}
	}
	enrolIn(t, x.st, "ag-01", "pc-1", "hq", "agent")
	enrolIn(t, x.st, "ag-03", "pc-3", "paris", "agent")
	if code, out := call(t, x.srv, "POST", "/v1/users", `{"name":"tina","password":"tina-password-1"}`, token); code != 201 {
		t.Fatal(code, out)
	}
	if code, out := call(t, x.srv, "PUT", "/v1/offices/hq/permissions", `{"grants":[{"subject":"user:tina","rights":["view"]}]}`, token); code != 200 {
		t.Fatal(code, out)
	}
	tina := x.login(t, "tina", "tina-password-1")
	for _, rq := range []struct{ method, path, target string }{
		{"POST", "/v1/hosts/pc-3/session-token", "pc-3"},
		{"GET", "/v1/hosts/pc-nosuch/reach", "pc-nosuch"},
	} {
		if code, out := call(t, x.srv, rq.method, rq.path, "", tina); code != 404 {
			t.Fatalf("%s %s as tina: %d %v, want 404", rq.method, rq.path, code, out)
		}
		evs, err := x.st.Audit(store.AuditFilter{Actor: "tina", Action: "connect"})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, ev := range evs {
			if !ev.Allowed && strings.Contains(ev.Target, rq.target) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s %s, refused to tina, left no refused connect record naming %s: %+v", rq.method, rq.path, rq.target, evs)
		}
	}
}

// A host is named by its hostname in any case, so two hosts called pc-1
// and PC-1 share a name: GET /v1/me/hosts says so, as it does for the
// same spelling, so that the technician names each by its id.
func TestMyHostsMarksHostnamesSharedInAnyCase(t *testing.T) {
	x := newAuthAPI(t)
	if err := x.st.CreateOffice(store.Office{Name: "hq"}); err != nil {
		t.Fatal(err)
	}
	enrolIn(t, x.st, "ag-01", "pc-1", "hq", "agent")
	enrolIn(t, x.st, "ag-02", "PC-1", "hq", "agent")
	if code, out := call(t, x.srv, "POST", "/v1/users", `{"name":"tina","password":"tina-password-1"}`, token); code != 201 {
		t.Fatal(code, out)
	}
	if code, out := call(t, x.srv, "PUT", "/v1/offices/hq/permissions", `{"grants":[{"subject":"user:tina","rights":["view"]}]}`, token); code != 200 {
		t.Fatal(code, out)
	}
	tina := x.login(t, "tina", "tina-password-1")
	if code, out := call(t, x.srv, "GET", "/v1/hosts/pc-1/reach", "", tina); code != 409 {
		t.Fatalf("reach pc-1, which two of tina's hosts are called in some case: %d %v; want 409", code, out)
	}
	code, out := call(t, x.srv, "GET", "/v1/me/hosts", "", tina)
	if code != 200 {
		t.Fatal(code, out)
	}
	hosts, _ := out["hosts"].([]any)
	if len(hosts) != 2 {
		t.Fatalf("tina's hosts: %v", out)
	}
	for _, h := range hosts {
		if h := h.(map[string]any); h["shared_hostname"] != true {
			t.Errorf("host %v %v: shared_hostname not set, though the name %v also names the other host", h["id"], h["hostname"], h["hostname"])
		}
	}
}

// A body is one JSON value and white space: a stray closing bracket or a
// second value after it is refused, not read as the first alone.
func TestBodyWithDataAfterTheJSONIsRefused(t *testing.T) {
	srv, _, _ := newAPI(t)
	for _, body := range []string{`{"name":"lyon"}}`, `{"name":"lyon"}]`, `{"name":"lyon"} {"name":"nice"}`} {
		code, out := call(t, srv, "POST", "/v1/offices", body, token)
		if code != 400 || !strings.Contains(out["error"].(string), "data after the JSON") {
			t.Errorf("%s: %d %v", body, code, out)
		}
	}
	if code, out := call(t, srv, "POST", "/v1/offices", "{\"name\":\"lyon\"}\n\t ", token); code != 201 {
		t.Fatalf("trailing white space: %d %v", code, out)
	}
}

// A JSON body that arrives a byte at a time, or never (sign-in needs no
// credential), does not hold its connection for ever: the request ends
// once the body has taken longer than BodyWait.
func TestASlowJSONBodyDoesNotHoldItsConnection(t *testing.T) {
	srv, _, _ := newAPI(t)
	apiOf(t, srv).d.BodyWait = 300 * time.Millisecond
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/offices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"na", token)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c) // the answer, then the connection's end
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the connection of a body that never came is still open after 10 s (read %q)", b)
	}
}
