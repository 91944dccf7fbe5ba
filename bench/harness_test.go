package bench

import (
	"bytes"
	"context"
	"fmt"
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

// The WAN's bucket holds 20 ms of the rate (at least one read), and Reset
// empties it, so that a herd's first bytes do not arrive above the rate.
func TestWANBurstAndReset(t *testing.T) {
	for _, c := range []struct {
		rate float64
		want int
	}{{50e6, 1_000_000}, {1e6, chunk}, {1e9, 20_000_000}} {
		if got := burstBytes(c.rate); got != c.want {
			t.Errorf("burst at %.0f B/s: %d, want %d", c.rate, got, c.want)
		}
	}
	w, err := StartWAN("127.0.0.1:1", 50e6)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if tok := w.lim.TokensAt(time.Now()); tok > float64(w.lim.Burst())/2 {
		t.Errorf("a new WAN holds %.0f bytes of burst, want an empty bucket", tok)
	}
}

// CPU time comes from the threads' schedstat in nanoseconds, not from
// 10 ms ticks.
func TestCPUTimeFinerThanTicks(t *testing.T) {
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d/schedstat", os.Getpid(), os.Getpid())); err != nil {
		t.Skip("no schedstat here:", err)
	}
	d, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 || d%(10*time.Millisecond) == 0 {
		t.Errorf("CPU time %v: want nanoseconds", d)
	}
}

// The WAN in a child process forwards, counts and resets like the one in
// this process.
func TestWANProcess(t *testing.T) {
	body := bytes.Repeat([]byte("wan "), 100_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	w, err := StartWANProcess(os.Args[0], strings.TrimPrefix(srv.URL, "http://"), 1e9)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if !w.LastDown().IsZero() || w.Down() != 0 {
		t.Errorf("a new WAN: %d bytes down, last at %v", w.Down(), w.LastDown())
	}
	w.Reset()
	before := time.Now()
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + w.Addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("%d bytes, %v", len(got), err)
	}
	if d := w.Down(); d < int64(len(body)) || d > int64(len(body))+1024 {
		t.Errorf("down %d bytes, want the body and its headers", d)
	}
	if last := w.LastDown(); last.Before(before.Add(-time.Second)) || last.After(time.Now()) {
		t.Errorf("last byte at %v, want during the request (from %v)", last, before)
	}
}
