package console

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// Sign-out and uploads change state too, and are refused when forged like
// any form: sign-out without the session's token or from another site
// leaves the session as it was, and an upload from another site stores
// nothing, whichever shape it takes — the script's (token in a header)
// or the plain form's (token in the first field), or neither.
func TestForgedSignOutAndUploadRefused(t *testing.T) {
	e := newEnv(t)
	b := e.signIn("", adminToken)
	signOut := []struct {
		name string
		req  func() *http.Request
	}{
		{"no token", func() *http.Request { return formPost("/ui/logout", url.Values{}, "http://"+host) }},
		{"another site", func() *http.Request {
			return formPost("/ui/logout", url.Values{"csrf": {b.csrf}}, "http://evil.example")
		}},
		{"cross-site fetch", func() *http.Request {
			r := formPost("/ui/logout", url.Values{"csrf": {b.csrf}}, "http://"+host)
			r.Header.Set("Sec-Fetch-Site", "cross-site")
			return r
		}},
	}
	for _, tc := range signOut {
		if res, _ := b.do(tc.req()); res.StatusCode != http.StatusForbidden {
			t.Errorf("sign-out, %s: %d, want 403", tc.name, res.StatusCode)
		}
		if res, _ := b.get("/ui/"); res.StatusCode != http.StatusOK {
			t.Fatalf("after a forged sign-out (%s) the session ended: %d", tc.name, res.StatusCode)
		}
	}

	multipartBody := func(fields ...string) (*bytes.Buffer, string) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		for i := 0; i+1 < len(fields); i += 2 {
			_ = mw.WriteField(fields[i], fields[i+1])
		}
		fw, _ := mw.CreateFormFile("file", "evil.bin")
		fw.Write([]byte("not wanted"))
		mw.Close()
		return &buf, mw.FormDataContentType()
	}
	upload := []struct {
		name string
		req  func() *http.Request
	}{
		{"script, another site", func() *http.Request {
			r := httptest.NewRequest("POST", "/ui/artifacts?name=evil.bin", strings.NewReader("not wanted"))
			r.Header.Set("X-CSRF-Token", b.csrf)
			r.Header.Set("Origin", "http://evil.example")
			return r
		}},
		{"script, no token", func() *http.Request {
			r := httptest.NewRequest("POST", "/ui/artifacts?name=evil.bin", strings.NewReader("not wanted"))
			r.Header.Set("Content-Type", "application/octet-stream")
			r.Header.Set("Origin", "http://"+host)
			return r
		}},
		{"form, another site", func() *http.Request {
			body, ct := multipartBody("csrf", b.csrf)
			r := httptest.NewRequest("POST", "/ui/artifacts", body)
			r.Header.Set("Content-Type", ct)
			r.Header.Set("Origin", "http://evil.example")
			return r
		}},
		{"form, token not first", func() *http.Request {
			body, ct := multipartBody("name", "evil.bin", "csrf", b.csrf)
			r := httptest.NewRequest("POST", "/ui/artifacts", body)
			r.Header.Set("Content-Type", ct)
			r.Header.Set("Origin", "http://"+host)
			return r
		}},
		{"form, no token", func() *http.Request {
			body, ct := multipartBody()
			r := httptest.NewRequest("POST", "/ui/artifacts", body)
			r.Header.Set("Content-Type", ct)
			r.Header.Set("Origin", "http://"+host)
			return r
		}},
	}
	for _, tc := range upload {
		res, _ := b.do(tc.req())
		if res.StatusCode < 400 {
			t.Errorf("upload, %s: %d, want a refusal", tc.name, res.StatusCode)
		}
		if e.files.n != 0 {
			t.Fatalf("upload, %s: %d bytes reached the file server", tc.name, e.files.n)
		}
	}
}

// formPost is a URL-encoded form post from origin.
func formPost(path string, form url.Values, origin string) *http.Request {
	r := httptest.NewRequest("POST", path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", origin)
	return r
}
