package api

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

// hashingUploader stands in for the file server: it hashes what it reads
// and remembers the sizes of what it holds.
type hashingUploader struct {
	mu   sync.Mutex
	got  int64
	held map[string]int64
	// dropNext makes the next upload's bytes go at once, as a removal
	// running while they went up would take them.
	dropNext bool
}

func (u *hashingUploader) Upload(_ context.Context, r io.Reader, _ int64) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	sha := hex.EncodeToString(h.Sum(nil))
	u.mu.Lock()
	defer u.mu.Unlock()
	u.got += n
	if err == nil {
		if u.held == nil {
			u.held = map[string]int64{}
		}
		u.held[sha] = n
		if u.dropNext {
			delete(u.held, sha)
			u.dropNext = false
		}
	}
	return sha, n, err
}

func (u *hashingUploader) Stat(_ context.Context, sha string) (int64, bool, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	n, ok := u.held[sha]
	return n, ok, nil
}

func (u *hashingUploader) Remove(_ context.Context, sha string) (bool, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	_, ok := u.held[sha]
	delete(u.held, sha)
	return ok, nil
}

type testSigner struct{ key ed25519.PrivateKey }

func (s testSigner) Sign(p *wire.Policy) ([]byte, error) {
	sp, err := wire.SignPolicy(s.key, p)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(sp)
}

type notes struct{ revs []uint64 }

func (n *notes) NotifyRevision(_ string, rev uint64) { n.revs = append(n.revs, rev) }
func (n *notes) NotifyRevisions(revs map[string]uint64) {
	for _, o := range slices.Sorted(maps.Keys(revs)) {
		n.NotifyRevision(o, revs[o])
	}
}

const token = "opa_test_token_that_is_long_enough_0123456789"

func newAPI(t testing.TB) (*httptest.Server, *store.Store, *notes) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	_, priv, _ := ed25519.GenerateKey(nil)
	n := &notes{}
	reg := prometheus.NewRegistry()
	a, err := New(Deps{Store: st, Files: &hashingUploader{}, Notifier: n, Signer: testSigner{priv}, Gatherer: reg, Logger: logging.Discard(), AdminToken: token}, reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return srv, st, n
}

func call(t testing.TB, srv *httptest.Server, method, path, body, tok string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestOfficeLifecycleAndErrors(t *testing.T) {
	srv, _, _ := newAPI(t)
	tests := []struct {
		name, method, path, body, tok string
		code                          int
		errHas                        string
	}{
		{"no token", "GET", "/v1/offices", "", "", 401, "missing bearer token"},
		{"wrong token", "GET", "/v1/offices", "", "nope", 401, "not valid"},
		{"create", "POST", "/v1/offices", `{"name":"berlin","location":"Berlin"}`, token, 201, ""},
		{"duplicate", "POST", "/v1/offices", `{"name":"berlin"}`, token, 409, "already exists"},
		{"bad name", "POST", "/v1/offices", `{"name":"Berlin Office"}`, token, 400, "office name"},
		{"unknown field", "POST", "/v1/offices", `{"name":"x","colour":"red"}`, token, 400, "colour"},
		{"relay without relays", "POST", "/v1/offices", `{"name":"x","mode":"relay"}`, token, 400, "at least one relay"},
		{"bad interval", "POST", "/v1/offices", `{"name":"x","checkin_interval":"1s"}`, token, 400, "checkin_interval"},
		{"bad mode", "PATCH", "/v1/offices/berlin", `{"mode":"carrier-pigeon"}`, token, 400, "mode"},
		{"plain relay refused", "PATCH", "/v1/offices/berlin", `{"mode":"relay","relays":["http://10.0.0.5:8090"]}`, token, 400, "plain HTTP, which office berlin does not allow"},
		{"edit", "PATCH", "/v1/offices/berlin", `{"mode":"relay","relays":["https://10.0.0.5:8090"]}`, token, 200, ""},
		{"plain relay allowed", "PATCH", "/v1/offices/berlin", `{"relays":["https://10.0.0.5:8090","http://10.0.0.6:8090"],"allow_plain_http":true}`, token, 200, ""},
		{"plain disallowed while used", "PATCH", "/v1/offices/berlin", `{"allow_plain_http":false}`, token, 400, "plain HTTP"},
		{"distribution server in another mode", "PATCH", "/v1/offices/berlin", `{"distribution_server":"10.0.0.7:8090"}`, token, 400, "for mode distribution only"},
		{"distribution without server", "PATCH", "/v1/offices/berlin", `{"mode":"distribution"}`, token, 400, "distribution_server"},
		{"distribution bad server", "PATCH", "/v1/offices/berlin", `{"mode":"distribution","distribution_server":"10.0.0.7"}`, token, 400, "host:port"},
		{"distribution plain refused", "PATCH", "/v1/offices/berlin", `{"mode":"distribution","distribution_server":"http://10.0.0.7:8090","allow_plain_http":false,"relays":[]}`, token, 400, "plain HTTP"},
		{"distribution", "PATCH", "/v1/offices/berlin", `{"mode":"distribution","distribution_server":"10.0.0.7:8090","allow_plain_http":false,"relays":[]}`, token, 200, ""},
		{"show missing", "GET", "/v1/offices/paris", "", token, 404, "not found"},
		{"token bad role", "POST", "/v1/offices/berlin/tokens", `{"role":"admin"}`, token, 400, "role"},
		{"token no office", "POST", "/v1/offices/paris/tokens", `{}`, token, 404, "office paris (of the token) does not exist"},
		{"token", "POST", "/v1/offices/berlin/tokens", `{"uses":3,"ttl":"1h"}`, token, 201, ""},
		{"unknown route", "GET", "/v1/nothing", "", token, 404, "no such API call"},
		{"artifact bad hash", "GET", "/v1/artifacts/../../x", "", token, 404, ""},
		{"artifact short hash", "GET", "/v1/artifacts/abc", "", token, 400, "SHA-256"},
		{"upload bad name", "POST", "/v1/artifacts?name=../x", "abc", token, 400, "artifact name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out := call(t, srv, tc.method, tc.path, tc.body, tc.tok)
			if code != tc.code {
				t.Fatalf("status %d, want %d (%v)", code, tc.code, out)
			}
			if tc.errHas != "" && !strings.Contains(out["error"].(string), tc.errHas) {
				t.Fatalf("error %q does not mention %q", out["error"], tc.errHas)
			}
		})
	}
}

func TestPolicyApplyValidatesAndSigns(t *testing.T) {
	srv, st, n := newAPI(t)
	call(t, srv, "POST", "/v1/offices", `{"name":"berlin"}`, token)
	req, _ := http.NewRequest("POST", srv.URL+"/v1/artifacts?name=hello.tar.gz", bytes.NewReader([]byte("package bytes")))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("upload: %v %v", resp, err)
	}
	var art store.Artifact
	json.NewDecoder(resp.Body).Decode(&art)
	resp.Body.Close()

	never := strings.Repeat("ab", 32)
	for name, tc := range map[string]struct{ yaml, errHas string }{
		"malformed":      {"items:\n  - kind: package\n    name: [\n", "line"},
		"unknown field":  {"items:\n  - kind: package\n    name: hello\n    verison: 1\n", "line 4"},
		"never uploaded": {"items:\n  - kind: package\n    name: hello\n    version: \"1\"\n    artifact: " + never + "\n", "never uploaded"},
	} {
		t.Run(name, func(t *testing.T) {
			code, out := call(t, srv, "PUT", "/v1/offices/berlin/policy", tc.yaml, token)
			if code != 400 || !strings.Contains(out["error"].(string), tc.errHas) {
				t.Fatalf("got %d %v, want 400 mentioning %q", code, out, tc.errHas)
			}
		})
	}
	if _, err := st.Policy("berlin"); err == nil {
		t.Fatal("a refused policy was stored")
	}
	good := "items:\n  - kind: package\n    name: hello\n    version: \"1.0\"\n    artifact: " + art.SHA256 + "\n"
	for want := 1.0; want <= 2; want++ {
		yaml := good
		if want == 2 {
			yaml = strings.Replace(good, `"1.0"`, `"1.1"`, 1) // the same again is no new revision (revision_test.go)
		}
		code, out := call(t, srv, "PUT", "/v1/offices/berlin/policy", yaml, token)
		if code != 200 || out["revision"].(float64) != want {
			t.Fatalf("apply: %d %v, want revision %v", code, out, want)
		}
	}
	if len(n.revs) != 2 || n.revs[1] != 2 {
		t.Fatalf("notified %v, want [1 2]", n.revs)
	}
	code, out := call(t, srv, "GET", "/v1/offices/berlin/policy", "", token)
	if code != 200 || !strings.Contains(out["yaml"].(string), art.SHA256) || len(out["items"].([]any)) != 1 {
		t.Fatalf("show policy: %d %v", code, out)
	}
}
