package bench

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// The WAN proxy forwards both ways, counts what comes down, and spends its
// one limiter for every connection.
func TestWANForwardsCountsAndShares(t *testing.T) {
	body := bytes.Repeat([]byte("wan "), 100_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	w, err := StartWAN(strings.TrimPrefix(srv.URL, "http://"), 1e9)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 3 {
		tr := &http.Transport{DisableKeepAlives: true}
		resp, err := (&http.Client{Transport: tr}).Get("http://" + w.Addr() + "/")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("request %d: %d bytes, %v", i, len(got), err)
		}
	}
	if d := w.Down(); d < int64(3*len(body)) || d > int64(3*len(body))+3*1024 {
		t.Errorf("down %d bytes, want the 3 bodies and their headers", d)
	}
}

func TestHerdAndSummary(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/short" {
			w.Write(body[:10])
			return
		}
		w.Write(body)
	}))
	defer srv.Close()
	s := Summarize(Herd(context.Background(), 4, 2, srv.URL+"/", int64(len(body))))
	if s.Clients != 8 || s.Errors != 0 || s.Bytes != 8000 || s.FirstByte <= 0 || s.LastByte < s.FirstByte {
		t.Errorf("summary %+v", s)
	}
	s = Summarize(Herd(context.Background(), 2, 1, srv.URL+"/short", int64(len(body))))
	if s.Errors != 2 || s.FirstErr == nil {
		t.Errorf("short bodies not counted as failures: %+v", s)
	}
}

func TestNginxConf(t *testing.T) {
	for _, slice := range []bool{false, true} {
		c := NginxConf("/p", "127.0.0.1:1", "127.0.0.1:2", slice, false)
		for _, want := range []string{"proxy_cache_lock on;", "proxy_cache_lock_timeout 1h;", "server 127.0.0.1:2;", "listen 127.0.0.1:1;"} {
			if !strings.Contains(c, want) {
				t.Errorf("slice=%v: no %q", slice, want)
			}
		}
		if strings.Contains(c, "slice 1m;") != slice || strings.Contains(c, "$slice_range") != slice {
			t.Errorf("slice=%v: slice directives wrong:\n%s", slice, c)
		}
		if strings.Contains(c, "user root") {
			t.Error("user root without asking")
		}
	}
}

func TestCPUTimeOfThisProcess(t *testing.T) {
	a, err := CPUTime(os.Getpid())
	if err != nil {
		t.Skip("no /proc here:", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for x := 0; ; x++ { // burn a little CPU until it shows
		b, _ := CPUTime(os.Getpid())
		if b > a {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("CPU time did not move")
		}
		_ = strings.Repeat("x", x%1000)
	}
}
