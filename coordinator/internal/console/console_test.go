package console

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"html"
	"io"
	"math/big"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/coordinator/internal/api"
	"github.com/outposthq/outpost/coordinator/internal/auth"
	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

const adminToken = "opa_console_test_token_long_enough_0123456789"

// uploader stands in for the file server: it hashes what it reads and
// remembers the largest single read, so a test can tell the body streamed.
type uploader struct {
	mu      sync.Mutex
	n       int64
	maxRead int
	held    map[string]int64
}

func (u *uploader) Upload(_ context.Context, r io.Reader, _ int64) (string, int64, error) {
	h := sha256.New()
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := r.Read(buf)
		h.Write(buf[:k])
		n += int64(k)
		u.mu.Lock()
		u.maxRead = max(u.maxRead, k)
		u.mu.Unlock()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", 0, err
		}
	}
	sha := hex.EncodeToString(h.Sum(nil))
	u.mu.Lock()
	defer u.mu.Unlock()
	u.n += n
	if u.held == nil {
		u.held = map[string]int64{}
	}
	u.held[sha] = n
	return sha, n, nil
}

func (u *uploader) Stat(_ context.Context, sha string) (int64, bool, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	n, ok := u.held[sha]
	return n, ok, nil
}

func (u *uploader) Remove(_ context.Context, sha string) (bool, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	_, ok := u.held[sha]
	delete(u.held, sha)
	return ok, nil
}

type signer struct{ key ed25519.PrivateKey }

func (s signer) Sign(p *wire.Policy) ([]byte, error) {
	sp, err := wire.SignPolicy(s.key, p)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(sp)
}

// clock is the console's clock, moved by tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	t     *testing.T
	st    *store.Store
	c     *Console
	api   *api.API
	clock *clock
	files *uploader
	ca    testCAInfo
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with a file server of the test's (nil: the
// in-memory uploader) and changes to the API's and the console's
// configuration.
func newEnvWith(t *testing.T, fs api.FileServer, set ...func(*api.Deps, *Config)) *env {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, err := auth.LoadOrCreateKey(filepath.Join(t.TempDir(), "token.key"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := auth.DefaultConfig()
	cfg.KDF, cfg.Issuer = auth.KDF{Time: 1, MemoryKiB: 1024, Threads: 1}, "sha256:test"
	reg := prometheus.NewRegistry()
	as, err := auth.New(cfg, st, key, logging.Discard(), reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := as.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	files := &uploader{}
	if fs == nil {
		fs = files
	}
	caInfo := newTestCAInfo(t)
	ck := &clock{t: time.Now()}
	deps := api.Deps{Store: st, Files: fs, Signer: signer{priv}, Gatherer: reg, Logger: logging.Discard(),
		AdminToken: adminToken, Auth: as, CA: caInfo}
	ccfg := Config{Now: ck.now}
	for _, f := range set {
		f(&deps, &ccfg)
	}
	a, err := api.New(deps, reg)
	if err != nil {
		t.Fatal(err)
	}
	ccfg.API = a
	c, err := New(ccfg, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, st: st, c: c, api: a, clock: ck, files: files, ca: caInfo}
}

// apiDo calls the API as the admin, to set up and to check what the
// console did.
func (e *env) apiDo(method, path string, body any, out any) int {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	rec := httptest.NewRecorder()
	e.api.ServeHTTP(rec, req)
	if out != nil && rec.Code < 300 {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			e.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return rec.Code
}

// browser is a cookie jar and the console's CSRF token of one user.
type browser struct {
	e       *env
	cookies map[string]string
	csrf    string
	tls     bool
	last    *http.Response
}

const host = "console.test"

func (e *env) browser() *browser { return &browser{e: e, cookies: map[string]string{}} }

func (b *browser) do(req *http.Request) (*http.Response, string) {
	b.e.t.Helper()
	req.Host = host
	req.RemoteAddr = "192.0.2.7:5555"
	if b.tls {
		req.TLS = &tls.ConnectionState{}
	}
	for k, v := range b.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	rec := httptest.NewRecorder()
	b.e.c.ServeHTTP(rec, req)
	res := rec.Result()
	for _, ck := range res.Cookies() {
		if ck.MaxAge < 0 {
			delete(b.cookies, ck.Name)
		} else {
			b.cookies[ck.Name] = ck.Value
		}
	}
	body := rec.Body.String()
	if m := csrfField.FindStringSubmatch(body); m != nil {
		b.csrf = m[1]
	}
	b.last = res
	return res, body
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) get(path string) (*http.Response, string) {
	b.e.t.Helper()
	return b.do(httptest.NewRequest("GET", path, nil))
}

// post sends a form as the console's own page would: with the CSRF token
// and the page's Origin.
func (b *browser) post(path string, form url.Values) (*http.Response, string) {
	b.e.t.Helper()
	if !form.Has("csrf") {
		form.Set("csrf", b.csrf)
	}
	req := httptest.NewRequest("POST", path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://"+host)
	return b.do(req)
}

// refused posts a form that the console must refuse: a 4xx, the error
// with want beside the field with id field, and the input in kept still in
// the form. It returns the page.
func (b *browser) refused(t *testing.T, path string, form url.Values, field, want string, kept ...string) string {
	t.Helper()
	b.get("/ui/") // a fresh CSRF token, as from the page
	res, body := b.post(path, form)
	if res.StatusCode < 400 || res.StatusCode >= 500 {
		t.Fatalf("status %d, want 4xx\n%s", res.StatusCode, body)
	}
	if !errorBeside(body, field, want) {
		t.Fatalf("no error with %q beside #%s:\n%s", want, field, body)
	}
	for _, k := range kept {
		if !strings.Contains(body, k) {
			t.Fatalf("the form lost %q:\n%s", k, body)
		}
	}
	return body
}

func (e *env) signIn(user, password string) *browser {
	e.t.Helper()
	b := e.browser()
	b.get("/ui/login")
	form := url.Values{"user": {user}, "password": {password}}
	if user == "" {
		form = url.Values{"token": {password}}
	}
	res, body := b.post("/ui/login", form)
	if res.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("sign in as %q: %d\n%s", user, res.StatusCode, body)
	}
	b.get("/ui/") // the page's CSRF token
	return b
}

func (e *env) addUser(name, password, role string) {
	e.t.Helper()
	if code := e.apiDo("POST", "/v1/users", map[string]any{"name": name, "password": password, "role": role}, nil); code != 201 {
		e.t.Fatalf("add user %s: %d", name, code)
	}
}

func TestSignInCookieAndHeaders(t *testing.T) {
	e := newEnv(t)
	e.addUser("olga", "correct horse", "operator")
	for _, secure := range []bool{false, true} {
		b := e.browser()
		b.tls = secure
		res, _ := b.get("/ui/")
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/login?next=%2Fui%2F" {
			t.Fatalf("signed out: %d %s", res.StatusCode, res.Header.Get("Location"))
		}
		res, body := b.get("/ui/login")
		for h, want := range map[string]string{"X-Frame-Options": "DENY", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
			if got := res.Header.Get(h); got != want {
				t.Errorf("%s = %q, want %q", h, got, want)
			}
		}
		csp := res.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("CSP %q", csp)
		}
		if strings.Contains(body, "<script>") || strings.Contains(body, " onclick=") {
			t.Error("the page has inline script")
		}
		res, _ = b.post("/ui/login", url.Values{"user": {"olga"}, "password": {"correct horse"}})
		if res.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign in: %d", res.StatusCode)
		}
		var sc *http.Cookie
		for _, ck := range res.Cookies() {
			if ck.Name == sessionCookie {
				sc = ck
			}
		}
		if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/ui/" || sc.Secure != secure || len(sc.Value) < 40 {
			t.Fatalf("TLS %v: session cookie %+v", secure, sc)
		}
		res, body = b.get("/ui/")
		if res.StatusCode != 200 || !strings.Contains(body, "olga · operator") {
			t.Fatalf("dashboard: %d", res.StatusCode)
		}
	}
}

func TestSignInErrors(t *testing.T) {
	e := newEnv(t)
	e.addUser("olga", "correct horse", "operator")
	e.addUser("tina", "technician pw", "")
	b := e.browser()
	b.get("/ui/login")
	res, body := b.post("/ui/login", url.Values{"user": {"olga"}, "password": {"wrong"}})
	if res.StatusCode != http.StatusUnauthorized || !errorBeside(body, "password", "") || !strings.Contains(body, `value="olga"`) {
		t.Fatalf("wrong password: %d\n%s", res.StatusCode, body)
	}
	res, body = b.post("/ui/login", url.Values{"token": {"opa_not_the_token_at_all_000000000000000"}})
	if res.StatusCode != http.StatusUnauthorized || !errorBeside(body, "token", "not valid") {
		t.Fatalf("wrong token: %d\n%s", res.StatusCode, body)
	}
	res, body = b.post("/ui/login", url.Values{"user": {"tina"}, "password": {"technician pw"}})
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "technician") {
		t.Fatalf("technician: %d\n%s", res.StatusCode, body)
	}
	// The sign-in form is CSRF-protected too: a post without the cookie's
	// twin, or from another site, is refused.
	res, _ = b.post("/ui/login", url.Values{"user": {"olga"}, "password": {"correct horse"}, "csrf": {"forged"}})
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("forged sign-in token: %d", res.StatusCode)
	}
	// Failures go through the API's rate limit: ten a minute per name.
	for range 12 {
		res, body = b.post("/ui/login", url.Values{"user": {"nobody"}, "password": {"guess"}})
	}
	if res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after 12 failures: %d\n%s", res.StatusCode, body)
	}
	// Pasted tokens are limited per address as well: 30 failures a
	// minute, then even the right one waits.
	for range 30 {
		b.post("/ui/login", url.Values{"token": {"opa_wrong_token_000000000000000000000000"}})
	}
	res, body = b.post("/ui/login", url.Values{"token": {adminToken}})
	if res.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "Too many failed sign-ins") {
		t.Fatalf("after 30 bad tokens: %d", res.StatusCode)
	}
	e.clock.add(time.Minute)
	// The pasted admin token signs in as admin.
	a := e.signIn("", adminToken)
	if _, body := a.get("/ui/"); !strings.Contains(body, "admin · admin") {
		t.Fatal("token sign-in is not admin")
	}
}

func TestCSRFRefused(t *testing.T) {
	e := newEnv(t)
	b := e.signIn("", adminToken)
	office := url.Values{"name": {"berlin"}, "mode": {"direct"}, "time_zone": {"UTC"}, "checkin_interval": {"2m"}}
	cases := []struct {
		name   string
		modify func(*http.Request)
	}{
		{"no token", func(r *http.Request) {}},
		{"wrong token", func(r *http.Request) {}},
		{"other origin", func(r *http.Request) { r.Header.Set("Origin", "http://evil.example") }},
		{"cross-site fetch", func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") }},
		{"no origin or referer", func(r *http.Request) { r.Header.Del("Origin") }},
		{"other referer", func(r *http.Request) {
			r.Header.Del("Origin")
			r.Header.Set("Referer", "http://evil.example/ui/offices")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := url.Values{}
			for k, v := range office {
				f[k] = v
			}
			switch tc.name {
			case "no token":
			case "wrong token":
				f.Set("csrf", "x"+b.csrf)
			default:
				f.Set("csrf", b.csrf)
			}
			req := httptest.NewRequest("POST", "/ui/offices", strings.NewReader(f.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", "http://"+host)
			tc.modify(req)
			res, _ := b.do(req)
			if res.StatusCode != http.StatusForbidden {
				t.Fatalf("status %d, want 403", res.StatusCode)
			}
			if code := e.apiDo("GET", "/v1/offices/berlin", nil, nil); code != 404 {
				t.Fatalf("the office was created: %d", code)
			}
		})
	}
	// The same form from the console's own page, by Referer alone, works.
	req := httptest.NewRequest("POST", "/ui/offices", strings.NewReader(office.Encode()+"&csrf="+url.QueryEscape(b.csrf)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Referer", "http://"+host+"/ui/offices/+new")
	if res, body := b.do(req); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("same-origin post: %d\n%s", res.StatusCode, body)
	}
	if code := e.apiDo("GET", "/v1/offices/berlin", nil, nil); code != 200 {
		t.Fatalf("office not created: %d", code)
	}
	// Another session's token is no good either.
	other := e.signIn("", adminToken)
	f := url.Values{"name": {"paris"}, "mode": {"direct"}, "csrf": {other.csrf}}
	if res, _ := b.post("/ui/offices", f); res.StatusCode != http.StatusForbidden {
		t.Fatalf("another session's token: %d", res.StatusCode)
	}
}

func TestSessionExpiry(t *testing.T) {
	e := newEnv(t)
	e.addUser("olga", "correct horse", "operator")

	// Idle: 30 minutes without a request end the session.
	b := e.signIn("olga", "correct horse")
	e.clock.add(29 * time.Minute)
	if res, _ := b.get("/ui/offices"); res.StatusCode != 200 {
		t.Fatalf("after 29 idle minutes: %d", res.StatusCode)
	}
	e.clock.add(31 * time.Minute)
	if res, _ := b.get("/ui/offices"); res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/ui/login") {
		t.Fatalf("after 31 idle minutes: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	if res, _ := b.post("/ui/offices", url.Values{"name": {"x"}}); res.StatusCode != http.StatusForbidden {
		t.Fatalf("post on an ended session: %d", res.StatusCode)
	}

	// Absolute: 12 hours after sign-in, however busy. The access token
	// (10 minutes) is refreshed on the way with the refresh token.
	b = e.signIn("olga", "correct horse")
	first := e.c.sessions.get(sessionRequest(b))
	first.mu.Lock()
	access := first.access
	first.mu.Unlock()
	for range 11*4 + 3 { // 11h45m, a request every 15 minutes
		e.clock.add(15 * time.Minute)
		if res, body := b.get("/ui/"); res.StatusCode != 200 {
			t.Fatalf("at %v: %d\n%s", e.clock.now(), res.StatusCode, body)
		}
	}
	first.mu.Lock()
	refreshed := first.access != access
	first.mu.Unlock()
	if !refreshed {
		t.Fatal("the access token was never refreshed")
	}
	e.clock.add(16 * time.Minute)
	if res, _ := b.get("/ui/"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("after 12h: %d", res.StatusCode)
	}

	// Sign-out ends the session at once.
	b = e.signIn("olga", "correct horse")
	if res, _ := b.post("/ui/logout", url.Values{}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %d", res.StatusCode)
	}
	if res, _ := b.get("/ui/"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("after sign-out: %d", res.StatusCode)
	}
}

// A refresh the API refuses (here the refresh token was spent elsewhere,
// which revokes the whole sign-in) ends the session.
func TestRefusedRefreshSignsOut(t *testing.T) {
	e := newEnv(t)
	e.addUser("olga", "correct horse", "operator")
	b := e.signIn("olga", "correct horse")
	s := e.c.sessions.get(sessionRequest(b))
	s.mu.Lock()
	refresh := s.refresh
	s.mu.Unlock()
	if code := e.apiDo("POST", "/v1/login/refresh", map[string]string{"refresh_token": refresh}, nil); code != 200 {
		t.Fatalf("refresh: %d", code)
	}
	e.clock.add(10 * time.Minute)
	res, _ := b.get("/ui/offices")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/login?ended=1" {
		t.Fatalf("after a refused refresh: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	if _, body := b.get("/ui/login?ended=1"); !strings.Contains(body, "Your session has ended") {
		t.Fatal("the sign-in page does not say why")
	}
}

func sessionRequest(b *browser) *http.Request {
	req := httptest.NewRequest("GET", "/ui/", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: b.cookies[sessionCookie]})
	return req
}

func TestRevokedUserIsSignedOut(t *testing.T) {
	e := newEnv(t)
	e.addUser("olga", "correct horse", "operator")
	b := e.signIn("olga", "correct horse")
	if code := e.apiDo("PATCH", "/v1/users/olga", map[string]any{"disabled": true}, nil); code != 200 {
		t.Fatal(code)
	}
	res, _ := b.get("/ui/offices")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/login?ended=1" {
		t.Fatalf("disabled user: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
}

// errorBeside says whether the first field error after the element with
// the id is before the next label, and holds want.
func errorBeside(body, id, want string) bool {
	i := strings.Index(body, `id="`+id+`"`)
	if i < 0 {
		return false
	}
	rest := body[i:]
	j := strings.Index(rest, `class="field-error`)
	if j < 0 {
		return false
	}
	if k := strings.Index(rest[1:], "<label"); k >= 0 && k+1 < j {
		return false
	}
	end := strings.Index(rest[j:], "</")
	return strings.Contains(rest[j:j+end], want)
}

func TestBadInputShownBesideFieldAndNothingSaved(t *testing.T) {
	e := newEnv(t)
	b := e.signIn("", adminToken)
	e.apiDo("POST", "/v1/offices", map[string]any{"name": "hq", "subnets": []string{"10.1.0.0/16"}}, nil)
	e.apiDo("POST", "/v1/patches/import", "patches: []\n", nil)
	e.apiDo("POST", "/v1/users", map[string]any{"name": "olga", "role": "operator"}, nil)
	e.apiDo("POST", "/v1/groups", map[string]any{"name": "techs"}, nil)
	good := func(kv ...string) url.Values {
		v := url.Values{"name": {"berlin"}, "description": {"Berlin branch"}, "location": {"Berlin, DE"}, "mode": {"direct"},
			"relays": {""}, "checkin_interval": {"2m"}, "time_zone": {"Europe/Berlin"}, "subnets": {"10.2.0.0/16"}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	nothing := func(path string) func() bool {
		return func() bool { return e.apiDo("GET", path, nil, nil) == 404 }
	}
	officeUnchanged := func() bool {
		var o office
		e.apiDo("GET", "/v1/offices/hq", nil, &o)
		return o.Description == "" && o.Mode == "direct" && len(o.Subnets) == 1 && o.TimeZone == "UTC"
	}
	cases := []struct {
		name, path string
		form       url.Values
		field      string // the id of the field the error must be beside
		want       string // part of the message
		kept       string // a typed value the form must show again
		nothing    func() bool
	}{
		{"office name", "/ui/offices", good("name", "Berlin!"), "name", "office name", `value="Berlin!"`, nothing("/v1/offices/Berlin!")},
		{"office interval", "/ui/offices", good("checkin_interval", "2 minutes"), "checkin_interval", "duration", "Berlin branch", nothing("/v1/offices/berlin")},
		{"office interval range", "/ui/offices", good("checkin_interval", "1s"), "checkin_interval", "checkin_interval", `value="1s"`, nothing("/v1/offices/berlin")},
		{"office time zone", "/ui/offices", good("time_zone", "Mars/Olympus"), "time_zone", "time_zone", `value="Mars/Olympus"`, nothing("/v1/offices/berlin")},
		{"office relay mode", "/ui/offices", good("mode", "relay"), "relays", "relay", `value="relay" selected`, nothing("/v1/offices/berlin")},
		{"office relay url", "/ui/offices", good("mode", "relay", "relays", "10.1.0.5:8090"), "relays", "relay", "10.1.0.5:8090", nothing("/v1/offices/berlin")},
		{"office subnet", "/ui/offices", good("subnets", "10.2.0.0/33"), "subnets", "subnet", "10.2.0.0/33", nothing("/v1/offices/berlin")},
		{"office subnet overlap", "/ui/offices", good("subnets", "10.1.2.0/24"), "subnets", "overlaps", "10.1.2.0/24", nothing("/v1/offices/berlin")},
		{"office exists", "/ui/offices", good("name", "hq"), "name", "already exists", `value="hq"`, officeUnchanged},
		{"office edit", "/ui/offices/hq", good("description", "new text", "time_zone", "Nowhere/Else"), "time_zone", "time_zone", "new text", officeUnchanged},
		{"office edit subnet", "/ui/offices/hq", good("description", "new text", "subnets", "300.1.0.0/16"), "subnets", "subnet", "300.1.0.0/16", officeUnchanged},
		{"computers", "/ui/offices/hq/computers", url.Values{"hostnames": {"pc-1, bad host!"}}, "hostnames", "hostname", "bad host!", func() bool {
			var cs struct{ Computers []computer }
			e.apiDo("GET", "/v1/offices/hq/computers", nil, &cs)
			return len(cs.Computers) == 0
		}},
		{"token uses", "/ui/offices/hq/tokens", url.Values{"role": {"agent"}, "uses": {"0"}, "ttl": {"24h"}}, "token-uses", "uses", "", noTokens(e)},
		{"token ttl", "/ui/offices/hq/tokens", url.Values{"role": {"agent"}, "uses": {"3"}, "ttl": {"forever"}}, "token-ttl", "", `value="forever"`, noTokens(e)},
		{"remove office", "/ui/offices/hq/delete", url.Values{"move_to": {"hq"}}, "move_to", "move_to", "", func() bool { return e.apiDo("GET", "/v1/offices/hq", nil, nil) == 200 }},
		{"policy", "/ui/offices/hq/policy", url.Values{"yaml": {"items:\n  - kind: package\n    name: hello\n    colour: blue\n"}}, "line-4", "line 4", "colour: blue", nothing("/v1/offices/hq/policy")},
		{"move agent", "/ui/agents/ag-none/move", url.Values{"office": {"nowhere"}}, "", "", "", func() bool { return true }},
		{"patch feed", "/ui/patches/import", url.Values{"feed": {"patches:\n  - id: OUT-1\n    severity: dreadful\n"}}, "feed", "not imported", "dreadful", func() bool {
			var ps struct{ Patches []patch }
			e.apiDo("GET", "/v1/patches", nil, &ps)
			return len(ps.Patches) == 0
		}},
		{"user name", "/ui/users", url.Values{"name": {"Bad Name"}, "password": {"pw"}, "role": {"operator"}}, "name", "name", `value="Bad Name"`, nothing("/v1/users/Bad%20Name")},
		{"user role", "/ui/users", url.Values{"name": {"paul"}, "password": {"pw"}, "role": {"king"}}, "role", "role", `value="paul"`, nothing("/v1/users/paul")},
		{"user exists", "/ui/users", url.Values{"name": {"olga"}, "role": {"admin"}}, "name", "already exists", `value="olga"`, func() bool {
			var u user
			e.apiDo("GET", "/v1/users/olga", nil, &u)
			return u.Role == "operator"
		}},
		{"user edit self", "/ui/users/admin", url.Values{"role": {"operator"}, "disabled": {"on"}}, "disabled", "yourself", "", func() bool {
			var u user
			e.apiDo("GET", "/v1/users/admin", nil, &u)
			return u.Role == "admin" && !u.Disabled
		}},
		{"group name", "/ui/groups", url.Values{"name": {"Bad Group"}, "members": {"olga"}}, "name", "name", `value="Bad Group"`, nothing("/v1/groups/Bad%20Group")},
		{"group members", "/ui/groups/techs", url.Values{"description": {"x"}, "members": {"nobody-such"}}, "members", "", "nobody-such", func() bool {
			var g group
			e.apiDo("GET", "/v1/groups/techs", nil, &g)
			return len(g.Members) == 0 && g.Description == ""
		}},
		{"grant shape", "/ui/offices/hq/permissions", url.Values{"grants": {"group:techs view"}}, "grants", "SUBJECT=RIGHTS", "group:techs view", noGrants(e)},
		{"grant right", "/ui/offices/hq/permissions", url.Values{"grants": {"group:techs=view,fly"}}, "grants", "right", "group:techs=view,fly", noGrants(e)},
		{"grant subject", "/ui/offices/hq/permissions", url.Values{"grants": {"team:techs=view"}}, "grants", "subject", "team:techs=view", noGrants(e)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b.get("/ui/") // a fresh CSRF token, as from the page
			res, body := b.post(tc.path, tc.form)
			if tc.field == "" { // an error the whole page answers: the agent does not exist
				if res.StatusCode != http.StatusNotFound {
					t.Fatalf("status %d\n%s", res.StatusCode, body)
				}
				return
			}
			if res.StatusCode < 400 || res.StatusCode >= 500 {
				t.Fatalf("status %d, want 4xx\n%s", res.StatusCode, body)
			}
			if !errorBeside(body, tc.field, tc.want) {
				t.Fatalf("no error with %q beside #%s:\n%s", tc.want, tc.field, body)
			}
			if tc.kept != "" && !strings.Contains(body, tc.kept) {
				t.Fatalf("the form lost %q:\n%s", tc.kept, body)
			}
			if !tc.nothing() {
				t.Fatal("something was saved")
			}
		})
	}
}

func noTokens(e *env) func() bool {
	return func() bool {
		var ts struct{ Tokens []enrollToken }
		e.apiDo("GET", "/v1/offices/hq/tokens", nil, &ts)
		return len(ts.Tokens) == 0
	}
}

func noGrants(e *env) func() bool {
	return func() bool {
		var p permissions
		e.apiDo("GET", "/v1/offices/hq/permissions", nil, &p)
		return len(p.Grants) == 0
	}
}

func TestFormsSave(t *testing.T) {
	e := newEnv(t)
	b := e.signIn("", adminToken)
	form := url.Values{"name": {"berlin"}, "description": {"Berlin branch"}, "location": {"Berlin, DE"}, "mode": {"relay"},
		"relays": {"https://10.1.0.5:8090\nhttps://10.1.0.6:8090"}, "checkin_interval": {"90s"}, "time_zone": {"Europe/Berlin"},
		"subnets": {"10.1.0.0/16, 192.168.7.0/24"}}
	if res, body := b.post("/ui/offices", form); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("add office: %d\n%s", res.StatusCode, body)
	}
	var o office
	e.apiDo("GET", "/v1/offices/berlin", nil, &o)
	if o.Description != "Berlin branch" || o.Location != "Berlin, DE" || o.Mode != "relay" || len(o.Relays) != 2 ||
		o.CheckinInterval != "1m30s" || o.TimeZone != "Europe/Berlin" || len(o.Subnets) != 2 {
		t.Fatalf("office %+v", o)
	}
	_, body := b.get("/ui/offices/berlin")
	if !strings.Contains(body, "https://10.1.0.6:8090") || !strings.Contains(body, "192.168.7.0/24") || !strings.Contains(body, "Office berlin added.") {
		t.Fatalf("office page:\n%s", body)
	}
	form.Set("mode", "direct")
	form.Set("relays", "")
	form.Set("subnets", "")
	if res, body := b.post("/ui/offices/berlin", form); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("edit office: %d\n%s", res.StatusCode, body)
	}
	e.apiDo("GET", "/v1/offices/berlin", nil, &o)
	if o.Mode != "direct" || len(o.Subnets) != 0 || len(o.Relays) != 0 {
		t.Fatalf("edited office %+v", o)
	}
	if res, _ := b.post("/ui/offices/berlin/computers", url.Values{"hostnames": {"pc-1 pc-2\nlaptop-anna"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatal(res.StatusCode)
	}
	var cs struct{ Computers []computer }
	e.apiDo("GET", "/v1/offices/berlin/computers", nil, &cs)
	if len(cs.Computers) != 3 {
		t.Fatalf("computers %+v", cs)
	}
	res, body := b.post("/ui/offices/berlin/tokens", url.Values{"role": {"agent"}, "uses": {"5"}, "ttl": {"1h"}})
	if res.StatusCode != http.StatusCreated || !regexp.MustCompile(`opt_[a-z0-9]+`).MatchString(body) {
		t.Fatalf("token: %d", res.StatusCode)
	}
	if res, body := b.post("/ui/offices/berlin/permissions", url.Values{"grants": {"group:techs=view,command\ndeny:user:tina=command"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("permissions: %d\n%s", res.StatusCode, body)
	}
	var p permissions
	e.apiDo("GET", "/v1/offices/berlin/permissions", nil, &p)
	if len(p.Grants) != 2 || !p.Grants[1].Deny || p.Grants[0].Subject != "group:techs" {
		t.Fatalf("grants %+v", p.Grants)
	}
	if res, body := b.post("/ui/users", url.Values{"name": {"tina"}, "password": {"a long enough password"}, "role": {""}}); res.StatusCode != http.StatusSeeOther {
		t.Fatal(res.StatusCode, body)
	}
	if res, _ := b.post("/ui/groups", url.Values{"name": {"techs"}, "members": {"tina"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatal(res.StatusCode)
	}
	_, body = b.get("/ui/audit?action=group.create")
	if !strings.Contains(body, "members tina") {
		t.Fatalf("audit:\n%s", body)
	}
	if res, _ := b.post("/ui/offices/berlin/rotate", url.Values{}); res.StatusCode != http.StatusSeeOther {
		t.Fatal(res.StatusCode)
	}
	if e.apiDo("GET", "/v1/offices/berlin", nil, &o); o.Rotation != "install" {
		t.Fatalf("rotation %q", o.Rotation)
	}
	if res, _ := b.post("/ui/agents/ag-nobody/delete", url.Values{}); res.StatusCode != http.StatusNotFound {
		t.Fatalf("removing an unknown agent: %d", res.StatusCode)
	}
	if res, _ := b.post("/ui/offices/berlin/delete", url.Values{"move_to": {""}}); res.StatusCode != http.StatusSeeOther {
		t.Fatal(res.StatusCode)
	}
	if e.apiDo("GET", "/v1/offices/berlin", nil, nil) != 404 {
		t.Fatal("office not removed")
	}
}

// Two admins edit the same permission list: the second save, made to the
// list as it was before the first, is refused and nothing of it saved; the
// page shows the list as it is now and keeps the text, and saving again
// (having seen the other's change) replaces it.
func TestPermissionsFormRefusesAListChangedSinceOpened(t *testing.T) {
	e := newEnv(t)
	e.apiDo("POST", "/v1/offices", map[string]any{"name": "hq"}, nil)
	anna, ben := e.signIn("", adminToken), e.signIn("", adminToken)
	etagIn := func(body string) string {
		t.Helper()
		m := regexp.MustCompile(`name="etag" value="([^"]*)"`).FindStringSubmatch(body)
		if m == nil || m[1] == "" {
			t.Fatalf("no etag in the form:\n%s", body)
		}
		return m[1]
	}
	_, page := anna.get("/ui/offices/hq/permissions")
	annaTag := etagIn(page)
	_, page = ben.get("/ui/offices/hq/permissions")
	benTag := etagIn(page)
	if res, body := anna.post("/ui/offices/hq/permissions", url.Values{"grants": {"group:techs=view"}, "etag": {annaTag}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("first save: %d\n%s", res.StatusCode, body)
	}
	res, body := ben.post("/ui/offices/hq/permissions", url.Values{"grants": {"user:olga=command"}, "etag": {benTag}})
	if res.StatusCode != http.StatusConflict || !strings.Contains(body, "Someone changed this list") ||
		!strings.Contains(body, `id="perms-now"`) || !strings.Contains(body, "group:techs=view") || !strings.Contains(body, "user:olga=command") {
		t.Fatalf("save over a list changed since: %d\n%s", res.StatusCode, body)
	}
	var p permissions
	e.apiDo("GET", "/v1/offices/hq/permissions", nil, &p)
	if len(p.Grants) != 1 || p.Grants[0].Subject != "group:techs" {
		t.Fatalf("the refused save changed the list: %+v", p.Grants)
	}
	if res, body := ben.post("/ui/offices/hq/permissions", url.Values{"grants": {"group:techs=view\nuser:olga=command"}, "etag": {etagIn(body)}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("saving again, having seen the change: %d\n%s", res.StatusCode, body)
	}
	e.apiDo("GET", "/v1/offices/hq/permissions", nil, &p)
	if len(p.Grants) != 2 {
		t.Fatalf("grants %+v", p.Grants)
	}
}

func TestReadOnlyUserCannotChange(t *testing.T) {
	e := newEnv(t)
	e.addUser("rita", "read only pw", "read-only")
	b := e.signIn("rita", "read only pw")
	if _, body := b.get("/ui/"); strings.Contains(body, `href="/ui/users"`) {
		t.Fatal("a read-only user is offered the users page")
	}
	res, body := b.post("/ui/offices", url.Values{"name": {"berlin"}, "mode": {"direct"}})
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "needs the operator role") {
		t.Fatalf("read-only adds an office: %d\n%s", res.StatusCode, body)
	}
	if e.apiDo("GET", "/v1/offices/berlin", nil, nil) != 404 {
		t.Fatal("office created")
	}
	if res, _ := b.get("/ui/users"); res.StatusCode != http.StatusForbidden {
		t.Fatalf("read-only sees users: %d", res.StatusCode)
	}
}

func TestUploadStreams(t *testing.T) {
	e := newEnv(t)
	b := e.signIn("", adminToken)
	payload := bytes.Repeat([]byte("outpost!"), 256<<10) // 2 MiB
	sum := sha256.Sum256(payload)

	// The page's script: raw body, token in a header.
	req := httptest.NewRequest("POST", "/ui/artifacts?name=big.bin", bytes.NewReader(payload))
	req.Header.Set("X-CSRF-Token", b.csrf)
	req.Header.Set("Origin", "http://"+host)
	res, body := b.do(req)
	if res.StatusCode != http.StatusCreated || !strings.Contains(body, hex.EncodeToString(sum[:])) {
		t.Fatalf("raw upload: %d %s", res.StatusCode, body)
	}
	if e.files.maxRead > 64<<10 {
		t.Fatalf("the upload was read in a %d-byte piece: not streamed", e.files.maxRead)
	}
	// The page reloads after the script's upload, and says what was stored.
	if _, page := b.get("/ui/artifacts"); !strings.Contains(page, "Uploaded big.bin: sha256 "+hex.EncodeToString(sum[:])) {
		t.Fatalf("no word of the upload after the reload:\n%s", page)
	}
	// Without a token: refused before anything reaches the file server.
	before := e.files.n
	req = httptest.NewRequest("POST", "/ui/artifacts?name=big.bin", bytes.NewReader(payload))
	req.Header.Set("X-CSRF-Token", "wrong")
	req.Header.Set("Origin", "http://"+host)
	if res, _ := b.do(req); res.StatusCode != http.StatusForbidden || e.files.n != before {
		t.Fatalf("upload with a wrong token: %d, %d bytes uploaded", res.StatusCode, e.files.n-before)
	}

	// The plain form: multipart, csrf first, streamed part by part.
	multi := func(csrf, name string) *http.Request {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		if csrf != "" {
			mw.WriteField("csrf", csrf)
		}
		mw.WriteField("name", name)
		fw, _ := mw.CreateFormFile("file", "hello-1.0.0.tar.gz")
		fw.Write([]byte("package bytes"))
		mw.Close()
		req := httptest.NewRequest("POST", "/ui/artifacts", &buf)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		req.Header.Set("Origin", "http://"+host)
		return req
	}
	if res, body := b.do(multi(b.csrf, "")); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("multipart upload: %d\n%s", res.StatusCode, body)
	}
	var arts struct{ Artifacts []artifact }
	e.apiDo("GET", "/v1/artifacts", nil, &arts)
	if len(arts.Artifacts) != 2 || arts.Artifacts[1].Name != "hello-1.0.0.tar.gz" {
		t.Fatalf("artifacts %+v", arts.Artifacts)
	}
	if res, _ := b.do(multi("", "")); res.StatusCode != http.StatusForbidden {
		t.Fatalf("multipart without token: %d", res.StatusCode)
	}
	res, body = b.do(multi(b.csrf, "bad name!"))
	if res.StatusCode != http.StatusBadRequest || !errorBeside(body, "upload-name", "artifact name") {
		t.Fatalf("bad name: %d\n%s", res.StatusCode, body)
	}
	e.apiDo("GET", "/v1/artifacts", nil, &arts)
	if len(arts.Artifacts) != 2 {
		t.Fatal("a badly named artifact was stored")
	}
}

func TestPolicyErrorAtItsLine(t *testing.T) {
	e := newEnv(t)
	b := e.signIn("", adminToken)
	e.apiDo("POST", "/v1/offices", map[string]any{"name": "hq"}, nil)
	src := "items:\n  - kind: package\n    name: hello\n    version: \"1.0.0\"\n    artifact: " + strings.Repeat("ab", 32) + "\n"
	res, body := b.post("/ui/offices/hq/policy", url.Values{"yaml": {src}})
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d", res.StatusCode)
	}
	if !regexp.MustCompile(`<li id="line-5" value="5" class="bad">.*line 5: `).MatchString(body) || !strings.Contains(body, `data-bad-lines="5"`) {
		t.Fatalf("line 5 not marked:\n%s", body)
	}
	if strings.Contains(body, `id="line-4" value="4" class="bad"`) {
		t.Fatal("line 4 marked")
	}
	// A good one applies.
	if res, body := b.post("/ui/offices/hq/policy", url.Values{"yaml": {"items: []\n"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("apply: %d\n%s", res.StatusCode, body)
	}
	_, body = b.get("/ui/offices/hq/policy")
	if !strings.Contains(body, "Applied revision 1") {
		t.Fatalf("no revision:\n%s", body)
	}
	// The same again: no new revision, and the page says so.
	if res, body := b.post("/ui/offices/hq/policy", url.Values{"yaml": {"items: []\n"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("apply again: %d\n%s", res.StatusCode, body)
	}
	_, body = b.get("/ui/offices/hq/policy")
	if !strings.Contains(body, "Unchanged: hq already runs this policy, at revision 1") {
		t.Fatalf("an unchanged apply not told:\n%s", body)
	}
}

func TestSearchAndFilters(t *testing.T) {
	e := newEnv(t)
	b := e.signIn("", adminToken)
	e.apiDo("POST", "/v1/offices", map[string]any{"name": "berlin", "location": "Berlin, DE"}, nil)
	e.apiDo("POST", "/v1/offices", map[string]any{"name": "paris", "subnets": []string{"10.9.0.0/16"}}, nil)
	_, body := b.get("/ui/offices?q=BERLIN")
	if !strings.Contains(body, `href="/ui/offices/berlin"`) || strings.Contains(body, `href="/ui/offices/paris"`) {
		t.Fatalf("search by name:\n%s", body)
	}
	_, body = b.get("/ui/offices?q=10.9.")
	if strings.Contains(body, `href="/ui/offices/berlin"`) || !strings.Contains(body, `href="/ui/offices/paris"`) {
		t.Fatal("search by subnet")
	}
	res, body := b.get("/ui/agents?office=nowhere")
	if res.StatusCode != http.StatusNotFound || !errorBeside(body, "f-office", "nowhere") {
		t.Fatalf("unknown office filter: %d\n%s", res.StatusCode, body)
	}
	res, body = b.get("/ui/agents?state=online&office=berlin")
	if res.StatusCode != 200 || !strings.Contains(body, "No agent matches") || !strings.Contains(body, `value="online" selected`) {
		t.Fatalf("filters: %d\n%s", res.StatusCode, body)
	}
	// pc-old was last heard of 40 days ago, pc-new now.
	e.enrolAgent("berlin", "ag-00000000000000a1", "pc-old")
	e.enrolAgent("berlin", "ag-00000000000000a2", "pc-new")
	for id, seen := range map[string]time.Time{"ag-00000000000000a1": time.Now().Add(-40 * 24 * time.Hour), "ag-00000000000000a2": time.Now()} {
		if _, err := e.st.UpdateMember(id, func(m *store.Member) { m.LastSeen = seen }); err != nil {
			t.Fatal(err)
		}
	}
	res, body = b.get("/ui/agents?not_seen=720h")
	if res.StatusCode != 200 || !strings.Contains(body, ">pc-old<") || strings.Contains(body, ">pc-new<") || !strings.Contains(body, `value="720h" selected`) {
		t.Fatalf("not seen for 30 days: %d\n%s", res.StatusCode, body)
	}
	// An upgrade under way: pc-new runs 1.6.0, pc-old refused it.
	for id, v := range map[string]string{"ag-00000000000000a1": "1.5.2", "ag-00000000000000a2": "1.6.0"} {
		if _, err := e.st.UpdateMember(id, func(m *store.Member) {
			m.Version = v
			if v == "1.5.2" {
				m.UpgradeProblem = "the new executable at /usr/bin/outpost-agent was refused, so version 1.5.2 runs on: asking its version: exit status 126"
			} else {
				m.LastHang = "restarted itself at 2026-11-28T12:00:00Z: no progress for 40m0s while checking in (goroutine stacks in /var/lib/outpost-agent/hang.txt)"
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	res, body = b.get("/ui/agents?not_version=1.6.0")
	if res.StatusCode != 200 || !strings.Contains(body, ">pc-old<") || strings.Contains(body, ">pc-new<") || !strings.Contains(body, `name="not_version" value="1.6.0"`) ||
		!strings.Contains(body, `<td class="version">1.5.2 <span class="badge warn" title="the new executable at /usr/bin/outpost-agent was refused`) {
		t.Fatalf("agents not on 1.6.0: %d\n%s", res.StatusCode, body)
	}
	if _, body = b.get("/ui/agents?state=upgrade-refused"); !strings.Contains(body, ">pc-old<") || strings.Contains(body, ">pc-new<") {
		t.Fatalf("agents that refused an upgrade:\n%s", body)
	}
	if _, body = b.get("/ui/agents/ag-00000000000000a1"); !strings.Contains(body, `<div id="agent-upgrade"><span class="badge warn">upgrade refused</span> the new executable at /usr/bin/outpost-agent was refused`) {
		t.Fatalf("the agent's page does not say why it refused its upgrade:\n%s", body)
	}
	if strings.Contains(body, `id="agent-hang"`) {
		t.Fatalf("an agent that did not hang is marked hung:\n%s", body)
	}
	if _, body = b.get("/ui/agents?state=hung"); !strings.Contains(body, ">pc-new<") || strings.Contains(body, ">pc-old<") || !strings.Contains(body, `value="hung" selected`) {
		t.Fatalf("agents that restarted themselves after a hang:\n%s", body)
	}
	if _, body = b.get("/ui/agents/ag-00000000000000a2"); !strings.Contains(body, `<div id="agent-hang"><span class="badge warn">hung</span> restarted itself at 2026-11-28T12:00:00Z: no progress for 40m0s while checking in`) {
		t.Fatalf("the agent's page does not say it restarted itself after a hang:\n%s", body)
	}
	res, body = b.get("/ui/agents?not_seen=forever")
	if res.StatusCode != http.StatusBadRequest || !errorBeside(body, "f-not-seen", "positive duration") {
		t.Fatalf("a not-seen filter that is no duration: %d\n%s", res.StatusCode, body)
	}
	res, body = b.get("/ui/audit?limit=0")
	if res.StatusCode != http.StatusBadRequest || !errorBeside(body, "a-limit", "limit") {
		t.Fatalf("audit limit: %d\n%s", res.StatusCode, body)
	}
}

func TestSignInRedirectsOnlyWithinConsole(t *testing.T) {
	e := newEnv(t)
	for next, want := range map[string]string{
		"/ui/offices?q=x":      "/ui/offices?q=x",
		"//evil.example/ui/":   "/ui/",
		"https://evil.example": "/ui/",
		"/ui/\\evil.example":   "/ui/",
		"/v1/offices":          "/ui/",
	} {
		b := e.browser()
		b.get("/ui/login?next=" + url.QueryEscape(next))
		res, _ := b.post("/ui/login", url.Values{"token": {adminToken}, "next": {next}})
		if got := res.Header.Get("Location"); got != want {
			t.Errorf("next %q: went to %q, want %q", next, got, want)
		}
	}
}

func TestStaticAssets(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	res, body := b.get("/ui/static/console.js")
	if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Content-Type"), "javascript") || !strings.Contains(body, "upload.onprogress") {
		t.Fatalf("console.js: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	res, _ = b.get("/ui/static/console.css")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/css") {
		t.Fatalf("console.css: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if res, _ := b.get("/ui/static/../console.go"); res.StatusCode == 200 {
		t.Fatal("served a file outside static/")
	}
}

var (
	formTag     = regexp.MustCompile(`(?s)<form [^>]*id="([^"]+)"[^>]*>(.*?)</form>`)
	inputTag    = regexp.MustCompile(`<input ([^>]*)>`)
	textareaTag = regexp.MustCompile(`(?s)<textarea ([^>]*)>(.*?)</textarea>`)
	selectTag   = regexp.MustCompile(`(?s)<select ([^>]*)>(.*?)</select>`)
	optionTag   = regexp.MustCompile(`<option ([^>]*)>`)
	attr        = regexp.MustCompile(`([a-z-]+)(?:="([^"]*)")?`)
)

func attrs(s string) map[string]string {
	out := map[string]string{}
	for _, m := range attr.FindAllStringSubmatch(s, -1) {
		out[m[1]] = html.UnescapeString(m[2])
	}
	return out
}

// formValues is what a browser would post from the form with this id as
// the page shows it, untouched: enabled fields, ticked checkboxes, each
// select's selected option (or its first).
func formValues(t testing.TB, body, id string) url.Values {
	t.Helper()
	var inner string
	for _, m := range formTag.FindAllStringSubmatch(body, -1) {
		if m[1] == id {
			inner = m[2]
		}
	}
	if inner == "" {
		t.Fatalf("no form #%s on the page:\n%s", id, body)
	}
	v := url.Values{}
	for _, m := range inputTag.FindAllStringSubmatch(inner, -1) {
		a := attrs(m[1])
		_, disabled := a["disabled"]
		_, checked := a["checked"]
		if a["name"] == "" || disabled || a["name"] == "csrf" || (a["type"] == "checkbox" && !checked) {
			continue
		}
		val := a["value"]
		if a["type"] == "checkbox" && val == "" {
			val = "on"
		}
		v.Add(a["name"], val)
	}
	for _, m := range textareaTag.FindAllStringSubmatch(inner, -1) {
		if a := attrs(m[1]); a["name"] != "" {
			v.Add(a["name"], html.UnescapeString(m[2]))
		}
	}
	for _, m := range selectTag.FindAllStringSubmatch(inner, -1) {
		a := attrs(m[1])
		first, chosen := "", ""
		for i, o := range optionTag.FindAllStringSubmatch(m[2], -1) {
			oa := attrs(o[1])
			if i == 0 {
				first = oa["value"]
			}
			if _, ok := oa["selected"]; ok {
				chosen = oa["value"]
			}
		}
		if chosen == "" {
			chosen = first
		}
		v.Set(a["name"], chosen)
	}
	return v
}

// The office form carries allow_plain_http and the distribution server:
// set on adding, shown pre-filled, kept by an edit of another field, and
// changed only when changed. A distribution office shows its staging.
func TestOfficeContentSettingsRoundTrip(t *testing.T) {
	e := newEnv(t)
	b := e.signIn("", adminToken)
	get := func(name string) office {
		t.Helper()
		var o office
		if code := e.apiDo("GET", "/v1/offices/"+name, nil, &o); code != 200 {
			t.Fatalf("office %s: %d", name, code)
		}
		return o
	}

	_, body := b.get("/ui/offices/+new")
	if v := formValues(t, body, "office-form"); v.Has("allow_plain_http") || v.Get("distribution_server") != "" {
		t.Fatalf("a new office starts with %v", v)
	}
	form := url.Values{"name": {"lyon"}, "mode": {"distribution"}, "distribution_server": {" 10.4.0.5:8090 "}, "allow_plain_http": {"on"},
		"relays": {"http://10.4.0.6:8090"}, "checkin_interval": {"2m"}, "time_zone": {"Europe/Paris"}}
	if res, body := b.post("/ui/offices", form); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("add office: %d\n%s", res.StatusCode, body)
	}
	o := get("lyon")
	if o.Mode != "distribution" || o.DistributionServer != "10.4.0.5:8090" || !o.AllowPlainHTTP || strings.Join(o.Relays, ",") != "http://10.4.0.6:8090" {
		t.Fatalf("office as added: %+v", o)
	}

	// The page shows them, and its staging: no relay has reported.
	_, body = b.get("/ui/offices/lyon")
	shown := formValues(t, body, "office-form")
	if shown.Get("mode") != "distribution" || shown.Get("distribution_server") != "10.4.0.5:8090" || shown.Get("allow_plain_http") != "on" {
		t.Fatalf("the edit form shows %v", shown)
	}
	if !regexp.MustCompile(`(?s)id="staging".*10\.4\.0\.5:8090.*id="staging-error">no relay of the office that advertises https://10\.4\.0\.5:8090`).MatchString(body) {
		t.Fatalf("no staging on the page:\n%s", body)
	}

	// An edit of the description, the rest as the page shows it, keeps them.
	shown.Set("description", "Lyon branch")
	if res, body := b.post("/ui/offices/lyon", shown); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("edit: %d\n%s", res.StatusCode, body)
	}
	o = get("lyon")
	if o.Description != "Lyon branch" || o.Mode != "distribution" || o.DistributionServer != "10.4.0.5:8090" || !o.AllowPlainHTTP {
		t.Fatalf("after editing the description: %+v", o)
	}

	// Unticking forbids plain HTTP (with the relay on HTTPS); leaving
	// distribution mode needs the server cleared.
	_, body = b.get("/ui/offices/lyon")
	shown = formValues(t, body, "office-form")
	shown.Del("allow_plain_http")
	shown.Set("relays", "https://10.4.0.6:8090")
	shown.Set("mode", "relay")
	shown.Set("distribution_server", "")
	if res, body := b.post("/ui/offices/lyon", shown); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("edit: %d\n%s", res.StatusCode, body)
	}
	o = get("lyon")
	if o.AllowPlainHTTP || o.Mode != "relay" || o.DistributionServer != "" || o.Staging != nil {
		t.Fatalf("after unticking and leaving distribution mode: %+v", o)
	}
	_, body = b.get("/ui/offices/lyon")
	if shown = formValues(t, body, "office-form"); shown.Has("allow_plain_http") || shown.Get("mode") != "relay" || strings.Contains(body, `id="staging"`) {
		t.Fatalf("the edit form shows %v", shown)
	}
	// And an untouched edit keeps plain HTTP forbidden.
	if res, body := b.post("/ui/offices/lyon", shown); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("edit: %d\n%s", res.StatusCode, body)
	}
	if o = get("lyon"); o.AllowPlainHTTP || o.Description != "Lyon branch" {
		t.Fatalf("after an untouched edit: %+v", o)
	}
}

// The API's refusals of plain HTTP and of the distribution server, and
// the console's of a distribution server out of its mode, are shown
// beside the field with the input kept, and change nothing.
func TestOfficeContentSettingsErrors(t *testing.T) {
	e := newEnv(t)
	b := e.signIn("", adminToken)
	e.apiDo("POST", "/v1/offices", map[string]any{"name": "hq", "mode": "relay", "relays": []string{"http://10.1.0.5:8090"}, "allow_plain_http": true}, nil)
	good := func(kv ...string) url.Values {
		v := url.Values{"name": {"berlin"}, "description": {"Berlin branch"}, "mode": {"direct"}, "relays": {""},
			"checkin_interval": {"2m"}, "time_zone": {"Europe/Berlin"}, "distribution_server": {""}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	noBerlin := func() bool { return e.apiDo("GET", "/v1/offices/berlin", nil, nil) == 404 }
	hqUnchanged := func() bool {
		var o office
		e.apiDo("GET", "/v1/offices/hq", nil, &o)
		return o.Description == "" && o.AllowPlainHTTP && o.Mode == "relay" && o.DistributionServer == ""
	}
	cases := []struct {
		name, path string
		form       url.Values
		field      string
		want       string
		kept       []string
		nothing    func() bool
	}{
		{"plain relay", "/ui/offices", good("mode", "relay", "relays", "http://10.2.0.5:8090"), "allow_plain_http", "is plain HTTP",
			[]string{"http://10.2.0.5:8090", `value="relay" selected`}, noBerlin},
		{"plain distribution server", "/ui/offices", good("mode", "distribution", "distribution_server", "http://10.2.0.5:8090"), "allow_plain_http", "is plain HTTP",
			[]string{`value="http://10.2.0.5:8090"`, `value="distribution" selected`}, noBerlin},
		{"distribution without server", "/ui/offices", good("mode", "distribution"), "distribution_server", "needs distribution_server",
			[]string{`value="distribution" selected`, "Berlin branch"}, noBerlin},
		{"distribution server no port", "/ui/offices", good("mode", "distribution", "distribution_server", "10.2.0.5", "allow_plain_http", "on"), "distribution_server", "host:port",
			[]string{`value="10.2.0.5"`, `name="allow_plain_http" checked`}, noBerlin},
		{"distribution server out of mode", "/ui/offices", good("distribution_server", "10.2.0.5:8090"), "distribution_server", "mode distribution only",
			[]string{`value="10.2.0.5:8090"`, `value="direct" selected`}, noBerlin},
		{"edit forbids plain while used", "/ui/offices/hq", good("mode", "relay", "relays", "http://10.1.0.5:8090", "description", "new text"), "allow_plain_http", "is plain HTTP",
			[]string{"new text"}, hqUnchanged},
		{"edit server out of mode", "/ui/offices/hq", good("mode", "relay", "relays", "http://10.1.0.5:8090", "allow_plain_http", "on", "distribution_server", "10.1.0.9:8090"),
			"distribution_server", "mode distribution only", []string{`value="10.1.0.9:8090"`, `name="allow_plain_http" checked`}, hqUnchanged},
		{"edit keeps the tick", "/ui/offices/hq", good("mode", "relay", "relays", "http://10.1.0.5:8090", "allow_plain_http", "on", "time_zone", "Mars/Olympus"),
			"time_zone", "time_zone", []string{`name="allow_plain_http" checked`, `value="Mars/Olympus"`}, hqUnchanged},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b.refused(t, tc.path, tc.form, tc.field, tc.want, tc.kept...)
			if !tc.nothing() {
				t.Fatal("something was saved")
			}
		})
	}
}

func (e *env) rules() []patchRule {
	e.t.Helper()
	var out struct{ Rules []patchRule }
	if code := e.apiDo("GET", "/v1/patch-rules", nil, &out); code != 200 {
		e.t.Fatalf("rules: %d", code)
	}
	return out.Rules
}

// Patch approval rules: listed under the patches, created and edited with
// every field the API takes, evaluated on demand and removed.
func TestPatchRules(t *testing.T) {
	e := newEnv(t)
	b := e.signIn("", adminToken)
	for _, o := range []string{"lab", "berlin", "paris"} {
		e.apiDo("POST", "/v1/offices", map[string]any{"name": o}, nil)
	}
	if _, body := b.get("/ui/patches"); !strings.Contains(body, `<a href="/ui/patch-rules" id="patch-rules">`) {
		t.Fatal("the patches page does not lead to the rules")
	}
	// The rules are part of the patches section of the navigation.
	if _, body := b.get("/ui/patch-rules"); !strings.Contains(body, "No rules yet") || !strings.Contains(body, `href="/ui/patch-rules/+new"`) ||
		!strings.Contains(body, `<a href="/ui/patches" aria-current="page">`) {
		t.Fatalf("rules page:\n%s", body)
	}
	res, body := b.get("/ui/patch-rules/+new")
	if res.StatusCode != 200 || !strings.Contains(body, `<option value="high" selected>`) {
		t.Fatalf("new rule: %d\n%s", res.StatusCode, body)
	}

	form := url.Values{"name": {"critical-first"}, "min_severity": {"critical"}, "test_office": {"lab"}, "after_days": {"5"},
		"offices": {"berlin", "paris"}, "window": {"22:00-04:00"}, "reboot": {"if-needed-inside-window"}}
	res, body = b.post("/ui/patch-rules", form)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/patch-rules/critical-first" {
		t.Fatalf("create: %d %s\n%s", res.StatusCode, res.Header.Get("Location"), body)
	}
	rs := e.rules()
	if len(rs) != 1 || rs[0].Name != "critical-first" || rs[0].MinSeverity != "critical" || rs[0].TestOffice != "lab" || rs[0].AfterDays != 5 ||
		strings.Join(rs[0].Offices, ",") != "berlin,paris" || rs[0].Window != "22:00-04:00" || rs[0].Reboot != "if-needed-inside-window" {
		t.Fatalf("rule as created: %+v", rs)
	}
	_, body = b.get("/ui/patch-rules")
	if !regexp.MustCompile(`(?s)<tr data-rule="critical-first">.*critical</span> and above.*lab.*5 days.*berlin, paris.*22:00-04:00.*if-needed-inside-window`).MatchString(body) {
		t.Fatalf("the list does not show the rule:\n%s", body)
	}

	// Its page shows it pre-filled, with a confirmed remove.
	_, body = b.get("/ui/patch-rules/critical-first")
	shown := formValues(t, body, "rule-form")
	want := url.Values{"min_severity": {"critical"}, "test_office": {"lab"}, "after_days": {"5"}, "offices": {"berlin", "paris"},
		"window": {"22:00-04:00"}, "reboot": {"if-needed-inside-window"}}
	if shown.Encode() != want.Encode() {
		t.Fatalf("the rule's form shows %v, want %v", shown, want)
	}
	if !strings.Contains(body, `data-confirm="Remove rule critical-first?`) {
		t.Fatal("removing the rule asks for no confirmation")
	}

	// Edit: no office ticked means every office but the test office.
	shown.Set("after_days", "7")
	shown.Del("offices")
	shown.Set("reboot", "")
	if res, body := b.post("/ui/patch-rules/critical-first", shown); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("edit: %d\n%s", res.StatusCode, body)
	}
	rs = e.rules()
	if len(rs) != 1 || rs[0].AfterDays != 7 || len(rs[0].Offices) != 0 || rs[0].Reboot != "" || rs[0].MinSeverity != "critical" || rs[0].Window != "22:00-04:00" {
		t.Fatalf("rule as edited: %+v", rs)
	}
	if _, body := b.get("/ui/patch-rules"); !strings.Contains(body, "every other office") || !strings.Contains(body, "Rule critical-first saved.") {
		t.Fatalf("rules page after the edit:\n%s", body)
	}

	// Evaluate now: a critical patch is approved in the test office at once.
	sum := sha256.Sum256([]byte("fixed package"))
	if code := e.apiDo("POST", "/v1/artifacts?name=fix.tar.gz", "fixed package", nil); code != 201 {
		t.Fatalf("upload: %d", code)
	}
	feed := "patches:\n  - id: OUT-1\n    title: t\n    severity: critical\n    package: hello\n    fixed_version: 2.0.0\n    artifact: " + hex.EncodeToString(sum[:]) + "\n"
	if code := e.apiDo("POST", "/v1/patches/import", feed, nil); code != 200 {
		t.Fatalf("import: %d", code)
	}
	if res, body := b.post("/ui/patch-rules/+evaluate", url.Values{}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("evaluate: %d\n%s", res.StatusCode, body)
	}
	if _, body := b.get("/ui/patch-rules"); !strings.Contains(body, "Rules evaluated: approved OUT-1 for lab.") {
		t.Fatalf("after evaluating:\n%s", body)
	}

	if res, body := b.post("/ui/patch-rules/critical-first/delete", url.Values{}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete: %d\n%s", res.StatusCode, body)
	}
	if rs := e.rules(); len(rs) != 0 {
		t.Fatalf("rules after removing: %+v", rs)
	}
	if _, body := b.get("/ui/patch-rules"); !strings.Contains(body, "Rule critical-first removed") {
		t.Fatalf("after removing:\n%s", body)
	}
	if res, _ := b.get("/ui/patch-rules/critical-first"); res.StatusCode != http.StatusNotFound {
		t.Fatalf("a removed rule's page: %d", res.StatusCode)
	}

	// The patch leaves the catalog from its page; the rule's approval goes
	// with it, which the confirmation says.
	_, body = b.get("/ui/patches/OUT-1")
	if !strings.Contains(body, `data-confirm="Remove OUT-1 from the catalog? Its approvals for 1 office(s) are revoked with it."`) ||
		!strings.Contains(body, `<input type="hidden" name="revoke" value="true">`) {
		t.Fatalf("the patch's page offers no removal that says what goes with it:\n%s", body)
	}
	if res, body := b.post("/ui/patches/OUT-1/delete", url.Values{}); res.StatusCode != http.StatusConflict || !strings.Contains(body, "is approved for office lab") {
		t.Fatalf("a removal without revoke while approved: %d\n%s", res.StatusCode, body)
	}
	if res, body := b.post("/ui/patches/OUT-1/delete", url.Values{"revoke": {"true"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("remove the patch: %d\n%s", res.StatusCode, body)
	}
	if _, body := b.get("/ui/patches"); !strings.Contains(body, "Patch OUT-1 removed from the catalog; every office&#39;s policy is signed again without it. Approvals revoked for lab.") {
		t.Fatalf("the catalog after the removal:\n%s", body)
	}
	if res, _ := b.get("/ui/patches/OUT-1"); res.StatusCode != http.StatusNotFound {
		t.Fatalf("a removed patch's page: %d", res.StatusCode)
	}
}

// A rule the API (or the console) refuses is shown again with the input
// and the message beside its field, and nothing is saved.
func TestPatchRuleErrors(t *testing.T) {
	e := newEnv(t)
	b := e.signIn("", adminToken)
	for _, o := range []string{"lab", "berlin"} {
		e.apiDo("POST", "/v1/offices", map[string]any{"name": o}, nil)
	}
	stored := map[string]any{"min_severity": "high", "test_office": "lab", "after_days": 3, "offices": []string{"berlin"}, "window": "", "reboot": "never"}
	if code := e.apiDo("PUT", "/v1/patch-rules/kept", stored, nil); code != 201 {
		t.Fatalf("rule: %d", code)
	}
	good := func(kv ...string) url.Values {
		v := url.Values{"name": {"new-rule"}, "min_severity": {"high"}, "test_office": {"lab"}, "after_days": {"3"}, "offices": {"berlin"},
			"window": {"01:00-05:00"}, "reboot": {"never"}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	cases := []struct {
		name, path string
		form       url.Values
		field      string
		want       string
		kept       string
	}{
		{"bad name", "/ui/patch-rules", good("name", "Bad Name"), "name", "rule name", `value="Bad Name"`},
		{"no name", "/ui/patch-rules", good("name", " "), "name", "Give the rule a name", `value="01:00-05:00"`},
		{"name taken", "/ui/patch-rules", good("name", "kept", "after_days", "9"), "name", "already exists", `value="9"`},
		{"severity", "/ui/patch-rules", good("min_severity", "dreadful"), "min_severity", "min_severity", `value="new-rule"`},
		{"no test office", "/ui/patch-rules", good("test_office", ""), "test_office", "test_office", `value="01:00-05:00"`},
		{"unknown test office", "/ui/patch-rules", good("test_office", "nowhere"), "test_office", "test office nowhere", `value="nowhere" selected`},
		{"days range", "/ui/patch-rules", good("after_days", "400"), "after_days", "after_days 400", `value="400"`},
		{"days not a number", "/ui/patch-rules", good("after_days", "three"), "after_days", "whole number", `value="three"`},
		{"unknown office", "/ui/patch-rules", good("offices", "atlantis"), "offices", "office atlantis", `value="atlantis" checked`},
		{"window", "/ui/patch-rules", good("window", "9pm"), "window", "window", `value="9pm"`},
		{"reboot", "/ui/patch-rules", good("reboot", "sometimes"), "reboot", "reboot", `value="new-rule"`},
		{"edit window", "/ui/patch-rules/kept", good("window", "23:00-23:00", "after_days", "11"), "window", "starts where it ends", `value="11"`},
		{"edit days", "/ui/patch-rules/kept", good("after_days", "-1"), "after_days", "after_days -1", `value="-1"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b.refused(t, tc.path, tc.form, tc.field, tc.want, tc.kept)
			rs := e.rules()
			if len(rs) != 1 || rs[0].Name != "kept" || rs[0].AfterDays != 3 || rs[0].Window != "" || rs[0].Reboot != "never" {
				t.Fatalf("something was saved: %+v", rs)
			}
		})
	}
}

// A read-only user sees the rules but cannot add, edit, evaluate or
// remove one: the API refuses, and the console says so.
func TestReadOnlyUserCannotChangeRules(t *testing.T) {
	e := newEnv(t)
	e.apiDo("POST", "/v1/offices", map[string]any{"name": "lab"}, nil)
	if code := e.apiDo("PUT", "/v1/patch-rules/high-first", map[string]any{"min_severity": "high", "test_office": "lab", "after_days": 3}, nil); code != 201 {
		t.Fatalf("rule: %d", code)
	}
	e.addUser("rita", "read only pw", "read-only")
	b := e.signIn("rita", "read only pw")
	if res, body := b.get("/ui/patch-rules"); res.StatusCode != 200 || !strings.Contains(body, `href="/ui/patch-rules/high-first"`) {
		t.Fatalf("read-only rules page: %d\n%s", res.StatusCode, body)
	}
	if res, body := b.get("/ui/patch-rules/high-first"); res.StatusCode != 200 || !strings.Contains(body, `value="3"`) {
		t.Fatalf("read-only rule page: %d\n%s", res.StatusCode, body)
	}
	form := url.Values{"name": {"mine"}, "min_severity": {"low"}, "test_office": {"lab"}, "after_days": {"0"}}
	for _, path := range []string{"/ui/patch-rules", "/ui/patch-rules/high-first", "/ui/patch-rules/high-first/delete", "/ui/patch-rules/+evaluate"} {
		b.get("/ui/")
		res, body := b.post(path, form)
		if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "needs the operator role") {
			t.Fatalf("read-only posts %s: %d\n%s", path, res.StatusCode, body)
		}
		if rs := e.rules(); len(rs) != 1 || rs[0].Name != "high-first" || rs[0].MinSeverity != "high" || rs[0].AfterDays != 3 {
			t.Fatalf("after read-only %s: %+v", path, rs)
		}
	}
}

var (
	anyForm  = regexp.MustCompile(`(?is)<form\b([^>]*)>.*?</form>`)
	noteText = `id="read-only-note"`
)

// postActions lists the action of every form on the page that posts,
// sign-out included.
func postActions(body string) []string {
	var out []string
	for _, m := range anyForm.FindAllStringSubmatch(body, -1) {
		if a := attrs(m[1]); strings.EqualFold(a["method"], "post") {
			out = append(out, a["action"])
		}
	}
	slices.Sort(out)
	return out
}

// changeControls says what on the page could change something, for a
// user who may change nothing there: a form that posts anywhere but to
// sign out, and a button, file field, CSRF token or confirmation outside
// the forms that only read (filters, search) and sign-out.
func changeControls(body string) []string {
	var found []string
	for _, a := range postActions(body) {
		if a != "/ui/logout" {
			found = append(found, "form posting to "+a)
		}
	}
	rest := anyForm.ReplaceAllStringFunc(body, func(f string) string {
		a := attrs(anyForm.FindStringSubmatch(f)[1])
		if !strings.EqualFold(a["method"], "post") || a["action"] == "/ui/logout" {
			return ""
		}
		return f
	})
	for _, c := range []string{"<button", `type="submit"`, `type="file"`, `name="csrf"`, "data-confirm"} {
		if strings.Contains(rest, c) {
			found = append(found, c)
		}
	}
	return found
}

// A user who may not change what a page shows sees it without the forms
// the API would refuse, and a note saying so once; a user who may sees
// every form as before. Pages with nothing to change show no note. Read-only users may change nothing, operators
// everything but permissions (and users and groups, whose pages only an
// admin can open).
func TestFormsOnlyForRolesThatMayChange(t *testing.T) {
	// An empty fleet's dashboard offers to add the first office.
	e := newEnv(t)
	e.addUser("rita", "read only pw", "read-only")
	if _, body := e.signIn("", adminToken).get("/ui/"); !strings.Contains(body, `href="/ui/offices/+new"`) {
		t.Fatalf("admin's empty dashboard offers no office:\n%s", body)
	}
	if _, body := e.signIn("rita", "read only pw").get("/ui/"); strings.Contains(body, `href="/ui/offices/+new"`) {
		t.Fatalf("read-only's empty dashboard offers to add an office:\n%s", body)
	}

	// A fleet with something to change on every page.
	se := newScopeEnv(t)
	e = se.env
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/offices/hq/computers", map[string]any{"hostnames": []string{"pc-9"}}},
		{"POST", "/v1/offices/hq/tokens", map[string]any{"role": "agent", "uses": 1, "ttl": "1h"}},
		{"PUT", "/v1/offices/hq/policy", pkgItems("hello", "1.0.0", se.v1)},
		{"PATCH", "/v1/agents/" + agentID + "/labels", map[string]any{"set": map[string]string{"kiosk": ""}}},
		{"PUT", "/v1/policies/kiosks", "targets: {labels: [kiosk]}\npriority: 3\n" + pkgItems("hello", "2.0.0", se.v2)},
		{"POST", "/v1/patches/import", "patches:\n  - id: OUT-1\n    title: t\n    severity: high\n    package: hello\n    fixed_version: 2.0.0\n    artifact: " + se.v2 + "\n"},
		{"POST", "/v1/patches/OUT-1/approve", map[string]any{"office": "lab", "reboot": "never"}},
		{"PUT", "/v1/patch-rules/high-first", map[string]any{"min_severity": "high", "test_office": "lab", "after_days": 3}},
	} {
		if code := e.apiDo(c.method, c.path, c.body, nil); code >= 300 {
			t.Fatalf("%s %s: %d", c.method, c.path, code)
		}
	}
	// Every token of hq can be revoked.
	var tokens struct{ Tokens []enrollToken }
	e.apiDo("GET", "/v1/offices/hq/tokens", nil, &tokens)
	var revokeForms []string
	for _, tk := range tokens.Tokens {
		if tk.State == "valid" { // a used-up or expired token enrols nothing already
			revokeForms = append(revokeForms, "/ui/offices/hq/tokens/"+tk.ID+"/revoke")
		}
	}
	e.addUser("rita", "read only pw", "read-only")
	e.addUser("olga", "operator pw", "operator")
	agent := "/ui/agents/" + agentID
	pages := []struct {
		path string
		// forms are the actions of the forms that post, as an admin sees them.
		forms []string
		// links lead to pages that only add something.
		links []string
		// shows is what every role sees.
		shows     []string
		adminOnly bool
	}{
		{path: "/ui/agents", shows: []string{`id="agent-filters"`, `href="/ui/agents/` + agentID + `"`}},
		{path: "/ui/offices", links: []string{"/ui/offices/+new"}, shows: []string{`href="/ui/offices/hq"`}},
		{path: "/ui/offices/+new", forms: []string{"/ui/offices"}},
		{path: "/ui/offices/hq", forms: append([]string{"/ui/offices/hq", "/ui/offices/hq/computers", "/ui/offices/hq/computers/rm",
			"/ui/offices/hq/tokens", "/ui/offices/hq/rotate", "/ui/offices/hq/delete"}, revokeForms...),
			shows: []string{"<td>pc-9</td>", `value="direct" selected`, "0 of 1"}},
		{path: "/ui/offices/hq/policy", forms: []string{"/ui/offices/hq/policy"}, shows: []string{se.v1}},
		{path: "/ui/offices/hq/permissions", forms: []string{"/ui/offices/hq/permissions"}, adminOnly: true, shows: []string{`id="grants"`}},
		{path: agent, forms: []string{agent + "/move", agent + "/labels", agent + "/labels", agent + "/delete"},
			shows: []string{`<span class="badge label">kiosk</span>`, `id="effective-items"`}},
		{path: agent + "/permissions", forms: []string{agent + "/permissions"}, adminOnly: true, shows: []string{`id="grants"`}},
		{path: "/ui/artifacts", forms: []string{"/ui/artifacts", "/ui/artifacts/" + se.v1 + "/delete", "/ui/artifacts/" + se.v2 + "/delete"},
			shows: []string{"hello-2.tar.gz"}},
		{path: "/ui/policies", links: []string{"/ui/policies/+new"}, shows: []string{`href="/ui/policies/kiosks"`, `href="/ui/offices/hq/policy"`}},
		{path: "/ui/policies/+new", forms: []string{"/ui/policies"}},
		{path: "/ui/policies/kiosks", forms: []string{"/ui/policies/kiosks", "/ui/policies/kiosks/delete"},
			shows: []string{`value="3"`, se.v2, "<li>pc-1</li>"}},
		{path: "/ui/patches", forms: []string{"/ui/patches/import"}, shows: []string{`href="/ui/patches/OUT-1"`}},
		{path: "/ui/patches/OUT-1", forms: []string{"/ui/patches/OUT-1/approve", "/ui/patches/OUT-1/revoke", "/ui/patches/OUT-1/delete"},
			shows: []string{"<tr><td>lab</td>"}},
		{path: "/ui/patch-rules", forms: []string{"/ui/patch-rules/+evaluate", "/ui/patch-rules/high-first/delete"},
			links: []string{"/ui/patch-rules/+new"}, shows: []string{`href="/ui/patch-rules/high-first"`}},
		{path: "/ui/patch-rules/+new", forms: []string{"/ui/patch-rules"}},
		{path: "/ui/patch-rules/high-first", forms: []string{"/ui/patch-rules/high-first", "/ui/patch-rules/high-first/delete"},
			shows: []string{`value="3"`}},
	}
	admin, operator, readOnly := se.b, e.signIn("olga", "operator pw"), e.signIn("rita", "read only pw")
	for _, p := range pages {
		t.Run(p.path, func(t *testing.T) {
			for _, who := range []struct {
				name      string
				b         *browser
				mayChange bool
			}{{"admin", admin, true}, {"operator", operator, !p.adminOnly}, {"read-only", readOnly, false}} {
				res, body := who.b.get(p.path)
				if res.StatusCode != http.StatusOK {
					t.Fatalf("%s: %d\n%s", who.name, res.StatusCode, body)
				}
				for _, s := range p.shows {
					if !strings.Contains(body, s) {
						t.Errorf("%s does not see %q", who.name, s)
					}
				}
				note := 0
				if !who.mayChange && len(p.forms)+len(p.links) > 0 {
					note = 1
				}
				if got := strings.Count(body, noteText); got != note {
					t.Errorf("%s sees the read-only note %d times", who.name, got)
				}
				if !who.mayChange {
					if c := changeControls(body); len(c) > 0 {
						t.Errorf("%s is offered changes: %q", who.name, c)
					}
					for _, l := range p.links {
						if strings.Contains(body, `href="`+l+`"`) {
							t.Errorf("%s is offered %s", who.name, l)
						}
					}
					if got := postActions(body); !slices.Equal(got, []string{"/ui/logout"}) {
						t.Errorf("%s: forms posting to %q, want only sign-out", who.name, got)
					}
					continue
				}
				want := append([]string{"/ui/logout"}, p.forms...)
				slices.Sort(want)
				if got := postActions(body); !slices.Equal(got, want) {
					t.Errorf("%s: forms posting to %q, want %q", who.name, got, want)
				}
				for _, l := range p.links {
					if !strings.Contains(body, `href="`+l+`"`) {
						t.Errorf("%s is not offered %s", who.name, l)
					}
				}
			}
		})
	}
}

// The dashboard counts the agents waiting for a reboot and leads to them;
// an agent's page says which items wait, and how to reboot it.
func TestAgentsWaitingForARebootShown(t *testing.T) {
	e := newEnv(t)
	e.apiDo("POST", "/v1/offices", map[string]any{"name": "hq"}, nil)
	tok := store.Token{ID: "t1", Hash: "h1", Office: "hq", Role: "agent", Uses: 2, Expires: time.Now().Add(time.Hour)}
	if err := e.st.CreateToken(tok); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ag-01", "ag-02"} {
		if _, _, err := e.st.Enroll("h1", time.Now(), func(store.Token, store.Office) (store.Member, error) {
			return store.Member{ID: id, Hostname: "pc-" + id[3:], Office: "hq", Home: "hq", Role: "agent"}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.st.UpdateMember("ag-02", func(m *store.Member) {
		m.Report = &store.Report{Revision: 1, At: time.Now(), RebootItems: []string{"patch/OUT-3"}, RebootSince: time.Now().Add(-time.Hour)}
	}); err != nil {
		t.Fatal(err)
	}
	b := e.signIn("", adminToken)
	_, body := b.get("/ui/")
	if !strings.Contains(body, `id="n-reboot">1 agents waiting for a reboot`) {
		t.Fatalf("dashboard:\n%s", body)
	}
	_, body = b.get("/ui/agents?state=reboot")
	if !strings.Contains(body, "pc-02") || strings.Contains(body, "pc-01") {
		t.Fatalf("agents waiting for a reboot:\n%s", body)
	}
	_, body = b.get("/ui/agents/ag-02")
	if !strings.Contains(body, `id="agent-reboot"`) || !strings.Contains(body, "patch/OUT-3") || !strings.Contains(body, "outpost reboot pc-02") {
		t.Fatalf("agent page:\n%s", body)
	}
}

// testCAInfo is a CA certificate for GET /v1/ca, ending in ten years.
type testCAInfo struct{ der []byte }

func newTestCAInfo(t *testing.T) testCAInfo {
	t.Helper()
	key, err := tlsutil.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Outpost CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Date(2036, 3, 4, 0, 0, 0, 0, time.UTC)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return testCAInfo{der}
}

func (c testCAInfo) Chain() [][]byte       { return [][]byte{c.der} }
func (c testCAInfo) RenewsFrom() time.Time { return time.Date(2033, 3, 4, 0, 0, 0, 0, time.UTC) }

// The dashboard says when the coordinator's CA ends and, after it renewed
// its certificate, how many members have yet to learn the new one.
func TestDashboardShowsTheCA(t *testing.T) {
	e := newEnv(t)
	e.apiDo("POST", "/v1/offices", map[string]any{"name": "hq"}, nil)
	tok := store.Token{ID: "t1", Hash: "h1", Office: "hq", Role: "agent", Uses: 2, Expires: time.Now().Add(time.Hour)}
	if err := e.st.CreateToken(tok); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ag-01", "ag-02"} {
		if _, _, err := e.st.Enroll("h1", time.Now(), func(store.Token, store.Office) (store.Member, error) {
			return store.Member{ID: id, Hostname: "pc-" + id[3:], Office: "hq", Home: "hq", Role: "agent",
				CAFingerprint: tlsutil.Fingerprint([]byte(id))}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	b := e.signIn("", adminToken)
	_, body := b.get("/ui/")
	if !strings.Contains(body, `id="ca">coordinator CA until 2036-03-04 (2 members still hold its earlier certificate`) {
		t.Fatalf("dashboard:\n%s", body)
	}
	for _, id := range []string{"ag-01", "ag-02"} {
		if _, err := e.st.UpdateMember(id, func(m *store.Member) { m.CAFingerprint = tlsutil.Fingerprint(e.ca.der) }); err != nil {
			t.Fatal(err)
		}
	}
	_, body = b.get("/ui/")
	if !strings.Contains(body, `id="ca">coordinator CA until 2036-03-04</span>`) {
		t.Fatalf("dashboard once every member learnt it:\n%s", body)
	}
}

// The artifacts page removes an artifact nothing names; one a policy names
// is refused with the coordinator's reason, and stays.
func TestRemoveArtifactFromTheConsole(t *testing.T) {
	e := newEnv(t)
	b := e.signIn("", adminToken)
	kept, spare := e.upload("kept-1.tar.gz", "bytes a policy names"), e.upload("spare-1.tar.gz", "bytes nothing names")
	if code := e.apiDo("POST", "/v1/offices", map[string]any{"name": "berlin"}, nil); code != 201 {
		t.Fatalf("office: %d", code)
	}
	if code := e.apiDo("PUT", "/v1/offices/berlin/policy", "items:\n  - kind: package\n    name: kept\n    version: \"1\"\n    artifact: "+kept+"\n", nil); code != 200 {
		t.Fatalf("policy: %d", code)
	}
	if _, body := b.get("/ui/artifacts"); !strings.Contains(body, `action="/ui/artifacts/`+spare+`/delete"`) {
		t.Fatalf("no remove button on the artifacts page:\n%s", body)
	}
	req := httptest.NewRequest("POST", "/ui/artifacts/"+kept+"/delete", strings.NewReader(url.Values{"csrf": {b.csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://"+host)
	req.Header.Set("Referer", "http://"+host+"/ui/artifacts")
	res, body := b.do(req)
	if res.StatusCode != http.StatusConflict || !strings.Contains(body, "is in use: the policy of office berlin") {
		t.Fatalf("remove what berlin's policy names: %d\n%s", res.StatusCode, body)
	}
	if !strings.Contains(body, `<a href="/ui/artifacts" id="back">Back</a>`) {
		t.Fatalf("the refusal offers no way back to the artifacts:\n%s", body)
	}
	if res, body := b.post("/ui/artifacts/"+spare+"/delete", url.Values{}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("remove the spare artifact: %d\n%s", res.StatusCode, body)
	}
	var arts struct{ Artifacts []artifact }
	e.apiDo("GET", "/v1/artifacts", nil, &arts)
	if len(arts.Artifacts) != 1 || arts.Artifacts[0].SHA256 != kept {
		t.Fatalf("artifacts after the removals: %+v", arts.Artifacts)
	}
	if res, _ := b.post("/ui/artifacts/"+spare+"/delete", url.Values{"csrf": {"stale"}}); res.StatusCode != http.StatusForbidden {
		t.Fatalf("a removal without the form's token: %d", res.StatusCode)
	}
}

// A token revoked from the office page enrols nothing more, and is listed
// as revoked without a second button.
func TestRevokeTokenFromTheConsole(t *testing.T) {
	e := newEnv(t)
	b := e.signIn("", adminToken)
	if code := e.apiDo("POST", "/v1/offices", map[string]any{"name": "berlin"}, nil); code != 201 {
		t.Fatalf("office: %d", code)
	}
	var tk enrollToken
	if code := e.apiDo("POST", "/v1/offices/berlin/tokens", map[string]any{"uses": 5}, &tk); code != 201 {
		t.Fatalf("token: %d", code)
	}
	form := `action="/ui/offices/berlin/tokens/` + tk.ID + `/revoke"`
	if _, body := b.get("/ui/offices/berlin"); !strings.Contains(body, form) || !strings.Contains(body, "<td>valid</td>") {
		t.Fatalf("no revoke button for a valid token:\n%s", body)
	}
	res, body := b.post("/ui/offices/berlin/tokens/"+tk.ID+"/revoke", url.Values{})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d\n%s", res.StatusCode, body)
	}
	_, body = b.get("/ui/offices/berlin")
	if strings.Contains(body, form) || !strings.Contains(body, "<td>revoked</td>") {
		t.Fatalf("the revoked token is offered again or not shown revoked:\n%s", body)
	}
	if res, body := b.post("/ui/offices/berlin/tokens/nope/revoke", url.Values{}); res.StatusCode != http.StatusNotFound {
		t.Fatalf("revoke an unknown token: %d\n%s", res.StatusCode, body)
	}
}

// A grant to a user or group that does not exist is saved, as the API
// allows, and the page says so (it said nothing; the CLI warns).
func TestConsoleGrantToSomeoneUnknownIsPointedOut(t *testing.T) {
	e := newEnv(t)
	b := e.signIn("", adminToken)
	if code := e.apiDo("POST", "/v1/offices", map[string]any{"name": "hq"}, nil); code != 201 {
		t.Fatalf("office: %d", code)
	}
	res, body := b.post("/ui/offices/hq/permissions", url.Values{"grants": {"user:tnia=view"}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("save: %d\n%s", res.StatusCode, body)
	}
	if _, page := b.get("/ui/offices/hq/permissions"); !strings.Contains(page, "Note: there is no user tnia yet") {
		t.Fatalf("no word of the unknown user:\n%s", page)
	}
}

// The audit page names a host by its hostname, as outpost audit does, and
// a user who may not read the audit gets a refusal page, not the filters
// over an empty table.
func TestAuditPageNamesHostsAndRefusesPlainly(t *testing.T) {
	e := newEnv(t)
	b := e.signIn("", adminToken)
	for _, o := range []string{"hq", "lab"} {
		e.apiDo("POST", "/v1/offices", map[string]any{"name": o}, nil)
	}
	e.enrolAgent("hq", "ag-00000000000000b1", "pc-audit")
	if code := e.apiDo("POST", "/v1/agents/ag-00000000000000b1/move", map[string]any{"office": "lab"}, nil); code != 200 {
		t.Fatalf("move: %d", code)
	}
	if _, body := b.get("/ui/audit"); !strings.Contains(body, "agent pc-audit") {
		t.Fatalf("the audit names the host by id:\n%s", body)
	}
	e.addUser("rita", "read only pw", "read-only")
	res, body := e.signIn("rita", "read only pw").get("/ui/audit")
	if res.StatusCode != http.StatusForbidden || strings.Contains(body, `id="audit-filters"`) || strings.Contains(body, "No events match") {
		t.Fatalf("a read-only user's audit page: %d\n%s", res.StatusCode, body)
	}
}
