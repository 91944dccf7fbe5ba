package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/quic-go/quic-go"
)

// maxAnswer bounds what the CLI reads of one API answer; a list of thousands
// of agents with their items stays well below it.
const maxAnswer = 64 << 20

// client calls the coordinator's admin API with the admin token.
type client struct {
	base   string // scheme://host[/prefix], no trailing slash
	server string // base as shown to people (without any password)
	token  string
	hc     *http.Client
	// cred is what token is, so that a refusal says what to do about it.
	cred credential
	// check is the command that shows whether a change took effect, for
	// a request whose answer a lost connection took away.
	check string
	// pinned is the CA fingerprint the client trusts the server by, if
	// any, to name it when the server's CA is another.
	pinned string
}

// credential is the kind of bearer token a client sends. An admin who
// mistyped a token and a technician whose sign-in ran out need different
// advice for the same 401.
type credential struct {
	kind credKind
	user string // who signed in, for credSession
	// server is the coordinator a credSession token was issued by: the
	// only one it is sent to.
	server string
}

type credKind int

const (
	// credAdmin is an admin token: --token, --token-file, OUTPOST_TOKEN or
	// OUTPOST_TOKEN_FILE.
	credAdmin credKind = iota
	// credSession is the access token outpost login kept.
	credSession
	// credSignIn is no token yet: the request signs in with a user name
	// and a password, or a refresh token.
	credSignIn
)

func newClient(server, token string, rt http.RoundTripper) (*client, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("--server %q: want the coordinator's URL, like %s (flag --server or env OUTPOST_SERVER)", server, defaultServer)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, usagef("--server %q: want a URL without query or fragment, like %s", server, defaultServer)
	}
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		rt = t
	}
	return &client{
		base:   strings.TrimRight(u.String(), "/"),
		server: strings.TrimRight(u.Redacted(), "/"),
		token:  token,
		hc:     &http.Client{Transport: rt, CheckRedirect: sameServer},
	}, nil
}

// sameServer follows a redirect only within the coordinator named: Go's
// client would take the token on to another port or scheme of the same
// host, or to a subdomain, and a 307 takes a body (a password, a refresh
// token) anywhere.
func sameServer(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if first := via[0].URL; req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
		return fmt.Errorf("it redirects to %s, which the CLI does not follow with its credentials; if the coordinator moved, pass its address with --server", req.URL.Redacted())
	}
	return nil
}

// apiError is an answer of the API with a non-2xx status.
type apiError struct {
	status  int
	message string
}

func (e *apiError) Error() string { return e.message }

// fatal says whether retrying cannot help: the request itself was refused.
func (e *apiError) fatal() bool { return e.status >= 400 && e.status < 500 }

func (c *client) newRequest(ctx context.Context, method, path string, query url.Values, body io.Reader) (*http.Request, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("build request %s %s: %w", method, path, err)
	}
	return req, nil
}

// get fetches path and returns the raw JSON answer.
func (c *client) get(ctx context.Context, path string, query url.Values) ([]byte, error) {
	req, err := c.newRequest(ctx, http.MethodGet, path, query, nil)
	if err != nil {
		return nil, err
	}
	return c.do(req)
}

// send calls method on path with v as a JSON body; v nil sends no body.
func (c *client) send(ctx context.Context, method, path string, v any) ([]byte, error) {
	var body io.Reader
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, nil, body)
	if err != nil {
		return nil, err
	}
	if v != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.do(req)
}

// do sends req with the admin token and returns the answer's body, or an
// error that says what went wrong in words an admin can act on.
func (c *client) do(req *http.Request) ([]byte, error) {
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "outpost-cli/"+Version)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(req, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return nil, c.transportError(req, fmt.Errorf("read the answer: %w", err))
	}
	if len(body) > maxAnswer {
		return nil, fmt.Errorf("the coordinator at %s answered %s %s with more than %d MiB; narrow the request", c.server, req.Method, req.URL.Path, maxAnswer>>20)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return body, nil
	}
	return nil, c.statusError(resp, body)
}

func (c *client) statusError(resp *http.Response, body []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &e) == nil {
		msg = e.Error
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return &apiError{status: resp.StatusCode, message: c.refusal(msg)}
	}
	if msg == "" {
		snippet := strings.TrimSpace(string(body))
		if len(snippet) > 200 {
			snippet = snippet[:200] + "..."
		}
		msg = fmt.Sprintf("the coordinator at %s answered %s", c.server, resp.Status)
		if snippet != "" {
			msg += ": " + snippet
		}
		if resp.StatusCode == http.StatusNotFound {
			msg += "; is --server the coordinator's admin address?"
		}
		if strings.Contains(snippet, "HTTP request to an HTTPS server") {
			msg = fmt.Sprintf("%s speaks HTTPS: write --server as https://%s", c.server, strings.TrimPrefix(c.server, "http://"))
		}
	}
	return &apiError{status: resp.StatusCode, message: msg}
}

// refusal explains a 401 by what was refused: a password, the sign-in kept
// by outpost login, or an admin token. msg is the coordinator's own word.
func (c *client) refusal(msg string) string {
	switch c.cred.kind {
	case credSignIn:
		const wrong = "user name or password is wrong"
		if msg == "" || msg == wrong {
			return wrong
		}
		return wrong + " (" + msg + ")"
	case credSession:
		why := "the coordinator at " + c.server + " refused the sign-in of " + c.cred.user + " kept by outpost login"
		// The coordinator's own "sign in again (outpost login)" is said
		// below, with the user's name.
		if msg, _, _ = strings.Cut(msg, ": sign in again"); msg != "" {
			why += " (" + msg + ")"
		}
		return why + ": it has ended or was revoked, or the account was disabled; sign in again with: outpost login " + c.cred.user
	}
	why := "the coordinator at " + c.server + " refused the admin token"
	if msg != "" {
		why += " (" + msg + ")"
	}
	return why + ": " + tokenHint
}

// transportError explains a request that got no answer.
func (c *client) transportError(req *http.Request, err error) error {
	ctx := req.Context()
	var te *timeoutError
	if errors.As(context.Cause(ctx), &te) {
		return fmt.Errorf("no answer from the coordinator at %s within %s; raise --timeout if it is busy", c.server, shortDuration(te.after))
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return errInterrupted
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot reach the coordinator at %s: connection refused; is it running there? Check --server or OUTPOST_SERVER", c.server)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("cannot reach the coordinator at %s: cannot resolve %q; check --server or OUTPOST_SERVER", c.server, dnsErr.Name)
	case isUntrusted(err) && strings.Contains(err.Error(), tlsutil.ErrWrongCA.Error()):
		// A fingerprint was given, so the advice to give one would miss:
		// it is the wrong one, or the server is another coordinator.
		fp := "the pinned fingerprint"
		if c.pinned != "" {
			fp = c.pinned
		}
		return fmt.Errorf("the coordinator at %s presented a certificate the CLI does not trust: its CA is not the one %s names "+
			"(from --ca-fingerprint, OUTPOST_CA_FINGERPRINT, or outpost login for this server); compare it with the coordinator's <data-dir>/ca.fingerprint, "+
			"and check that --server names that coordinator", c.server, fp)
	case isUntrusted(err):
		return fmt.Errorf("the coordinator at %s presented a certificate the CLI does not trust (%v): %s", c.server, err, trustHint)
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return fmt.Errorf("cannot reach the coordinator at %s: %v; check --server or OUTPOST_SERVER", c.server, opErr.Err)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		// net/http's error for it is not exported. The plain port is the
		// coordinator's loopback one (http_addr), so the URL with http://
		// is the likely fix.
		return fmt.Errorf("%s speaks plain HTTP: write --server as http://%s (or use the coordinator's HTTPS address, https_addr)",
			c.server, strings.TrimPrefix(c.server, "https://"))
	case connectionLost(err):
		return fmt.Errorf("the connection to the coordinator at %s was lost during %s %s%s: %s",
			c.server, req.Method, req.URL.Path, lostCause(err), c.afterLoss(req))
	}
	return fmt.Errorf("talk to the coordinator at %s: %w", c.server, err)
}

// afterLoss says what to do about a request whose answer was lost: a
// read changes nothing, a change may or may not have been made.
func (c *client) afterLoss(req *http.Request) string {
	switch path := req.URL.Path; {
	case req.Method == http.MethodGet || req.Method == http.MethodHead:
		return "try again (a read changes nothing)"
	case path == "/v1/login/refresh":
		// Presenting a spent refresh token revokes the sign-in.
		return "try again; if the sign-in is then refused, the coordinator had renewed it and the answer was lost: sign in again with outpost login " + c.cred.user
	case path == "/v1/login", path == "/v1/logout", strings.HasSuffix(path, "/session-token"):
		return "try again"
	}
	check := c.check
	if check == "" {
		check = "the matching list or show command"
	}
	return "it may or may not have taken effect; check with " + check + " and try again"
}

// connectionLost says whether err is a connection to the coordinator or a
// host that broke off after it was made: the peer restarted or went away,
// or the network between failed.
func connectionLost(err error) bool {
	var appErr *quic.ApplicationError
	var idle *quic.IdleTimeoutError
	var reset *quic.StatelessResetError
	var streamErr *quic.StreamError
	var transportErr *quic.TransportError
	switch {
	case errors.As(err, &appErr), errors.As(err, &idle), errors.As(err, &reset), errors.As(err, &streamErr), errors.As(err, &transportErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE):
		return true
	}
	// HTTP/2's errors for it are not exported.
	msg := err.Error()
	return strings.Contains(msg, "client connection lost") || strings.Contains(msg, "transport connection broken") || strings.Contains(msg, "GOAWAY")
}

// lostCause is what a lost connection tells of its cause, as " (...)", or
// "" when it tells nothing a person can use.
func lostCause(err error) string {
	var appErr *quic.ApplicationError
	var idle *quic.IdleTimeoutError
	var reset *quic.StatelessResetError
	switch {
	case errors.As(err, &reset):
		return " (the other end restarted)"
	case errors.As(err, &appErr) && appErr.Remote:
		return " (the other end closed it, as it does when it stops)"
	case errors.As(err, &idle):
		return " (no answer for too long)"
	case errors.Is(err, syscall.ECONNRESET):
		return " (connection reset)"
	}
	return ""
}

// retryable says whether asking again later may succeed: the coordinator was
// unreachable or failed, rather than refusing the request.
func retryable(err error) bool {
	var ae *apiError
	if errors.As(err, &ae) {
		return !ae.fatal()
	}
	return !errors.Is(err, errInterrupted)
}
