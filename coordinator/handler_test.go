package coordinator

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// The console is mounted beside the API without changing it: /v1/,
// /healthz and /metrics reach the API, /ui/ the console, / leads there.
func TestHandlerMountsConsole(t *testing.T) {
	tag := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Header().Set("X-Handler", name) })
	}
	h := handler(tag("api"), tag("console"))
	for _, tc := range []struct {
		method, path, handler string
		code                  int
		location              string
	}{
		{"GET", "/", "", http.StatusSeeOther, "/ui/"},
		{"GET", "/ui/", "console", 200, ""},
		{"POST", "/ui/offices", "console", 200, ""},
		{"GET", "/ui/static/console.css", "console", 200, ""},
		{"GET", "/ui", "", http.StatusTemporaryRedirect, "/ui/"},
		{"GET", "/healthz", "api", 200, ""},
		{"GET", "/metrics", "api", 200, ""},
		{"GET", "/v1/offices", "api", 200, ""},
		{"POST", "/v1/artifacts", "api", 200, ""},
		{"POST", "/", "api", 200, ""},
		{"GET", "/elsewhere", "api", 200, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.code || rec.Header().Get("X-Handler") != tc.handler || rec.Header().Get("Location") != tc.location {
			t.Errorf("%s %s: %d by %q to %q; want %d by %q to %q", tc.method, tc.path, rec.Code, rec.Header().Get("X-Handler"),
				rec.Header().Get("Location"), tc.code, tc.handler, tc.location)
		}
	}
}
