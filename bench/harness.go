// Package bench is the side-by-side benchmark of the relay against Debian's
// nginx as a caching reverse proxy, both in front of the same real MinIO
// through one shared rate cap that stands for an office's WAN uplink. It
// holds the pieces (the capped forwarding proxy, process control, CPU
// accounting, the herd of clients); the benchmark itself is in
// sidebyside_test.go and runs with `make bench`.
//
// It is not a load generator for production use, and asserts nothing about
// speed in tests: the figures are printed as a table.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// WAN is a TCP forwarding proxy whose downstream direction (file server to
// cache) goes through one rate limiter shared by every connection: the
// office's uplink, not a per-request limit.
//
// The limiter is a token bucket holding wanBurst of the rate, as a traffic
// shaper's does. The proxy is a goroutine of the benchmark process, beside
// the herd's clients, and on a loaded machine it waits for a CPU now and
// then; a real uplink keeps delivering meanwhile. With a bucket of one read
// (64 KiB, 1.3 ms at 50 MB/s) every such wait was link time lost for good,
// and a cold herd of 50 measured the benchmark's own CPU starvation: the
// link ran at 32 to 43 MB/s instead of 50. A bucket of 20 ms lets the
// proxy catch up after a short wait, and can make a transfer at most that
// much shorter than size/rate (Reset empties it before each herd).
type WAN struct {
	ln     net.Listener
	target string
	lim    *rate.Limiter
	down   atomic.Int64 // bytes from the target to the clients
	last   atomic.Int64 // when the last of them went out, Unix nanoseconds

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// chunk is the unit of one read and one limiter wait.
const chunk = 64 << 10

// wanBurst is how much of the rate the WAN's bucket holds.
const wanBurst = 20 * time.Millisecond

// burstBytes is the WAN's bucket for a rate: wanBurst of it, and at least
// one read.
func burstBytes(bytesPerSec float64) int {
	return max(chunk, int(bytesPerSec*wanBurst.Seconds()))
}

// StartWAN listens on a loopback port and forwards to target, capping the
// target-to-client direction at bytesPerSec for all connections together.
func StartWAN(target string, bytesPerSec float64) (*WAN, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("wan proxy: %w", err)
	}
	w := &WAN{ln: ln, target: target, lim: rate.NewLimiter(rate.Limit(bytesPerSec), burstBytes(bytesPerSec)),
		conns: map[net.Conn]struct{}{}}
	w.Reset()
	w.wg.Add(1)
	go w.accept()
	return w, nil
}

// Addr is where the cache under test should find the file server.
func (w *WAN) Addr() string { return w.ln.Addr().String() }

// Down is the number of bytes that have crossed the WAN toward the office.
func (w *WAN) Down() int64 { return w.down.Load() }

// LastDown is when the last byte toward the office was handed to the cache
// under test; zero before any.
func (w *WAN) LastDown() time.Time {
	if ns := w.last.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Reset empties the bucket, so that what the link did not carry while idle
// is not carried at once after: a herd's first bytes start at the rate.
func (w *WAN) Reset() {
	now := time.Now()
	if tok := w.lim.TokensAt(now); tok >= 1 {
		w.lim.ReserveN(now, int(tok))
	}
}

// Close stops the proxy and cuts its connections.
func (w *WAN) Close() {
	w.ln.Close()
	w.mu.Lock()
	for c := range w.conns {
		c.Close()
	}
	w.mu.Unlock()
	w.wg.Wait()
}

func (w *WAN) track(c net.Conn, add bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if add {
		w.conns[c] = struct{}{}
	} else {
		delete(w.conns, c)
	}
}

func (w *WAN) accept() {
	defer w.wg.Done()
	for {
		c, err := w.ln.Accept()
		if err != nil {
			return
		}
		w.wg.Add(1)
		go w.serve(c)
	}
}

func (w *WAN) serve(c net.Conn) {
	defer w.wg.Done()
	t, err := net.Dial("tcp", w.target)
	if err != nil {
		c.Close()
		return
	}
	w.track(c, true)
	w.track(t, true)
	defer func() {
		w.track(c, false)
		w.track(t, false)
		c.Close()
		t.Close()
	}()
	done := make(chan struct{})
	go func() {
		io.Copy(t, c) // requests go up unlimited: they are small
		t.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	buf := make([]byte, chunk)
	for {
		n, err := t.Read(buf)
		if n > 0 {
			if werr := w.lim.WaitN(context.Background(), n); werr != nil {
				break
			}
			w.down.Add(int64(n))
			if _, werr := c.Write(buf[:n]); werr != nil {
				break
			}
			w.last.Store(time.Now().UnixNano())
		}
		if err != nil {
			break
		}
	}
	c.(*net.TCPConn).CloseWrite()
	<-done
}

// CPUTime is the CPU time of pid and all its descendants (every thread of
// each), read from /proc (Linux only). It sums each thread's run time in
// nanoseconds (/proc/PID/task/TID/schedstat) where the kernel has it, since
// utime+stime in /proc/PID/stat come in ticks of 10 ms, truncated, which
// is several percent of a warm run and more for nginx's several processes.
// Without IRQ time accounting (Debian's default) both include the softirq
// work that ran on the thread, such as loopback TCP receive processing.
func CPUTime(pid int) (time.Duration, error) {
	pids := append([]int{pid}, descendants(pid)...)
	var total time.Duration
	for _, p := range pids {
		d, err := processCPU(p)
		if err != nil {
			if p == pid {
				return 0, err
			}
			continue // a worker that just ended
		}
		total += d
	}
	return total, nil
}

// processCPU is one process's CPU time: its threads' schedstat, or its
// stat's ticks when schedstat is missing.
func processCPU(pid int) (time.Duration, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err == nil {
		var total time.Duration
		ok := true
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
			if err != nil {
				if errors.Is(err, os.ErrNotExist) && t.Name() != strconv.Itoa(pid) {
					continue // a thread that just ended
				}
				ok = false
				break
			}
			f := strings.Fields(string(b))
			if len(f) < 1 {
				ok = false
				break
			}
			ns, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				ok = false
				break
			}
			total += time.Duration(ns)
		}
		if ok {
			return total, nil
		}
	}
	tick := 100.0 // USER_HZ on Linux
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return time.Duration((ut + st) / tick * float64(time.Second)), nil
}

func descendants(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(fields) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(fields[1])
		children[pp] = append(children[pp], p)
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}

// Download is one client's account of one GET.
type Download struct {
	FirstByte time.Duration // from the common start to the first body byte
	LastByte  time.Duration // from the common start to the end of the body
	Bytes     int64
	Err       error
}

// Herd starts n clients at the same instant, each getting url reps times
// in a row, and returns every download.
func Herd(ctx context.Context, n, reps int, url string, want int64) []Download {
	tr := &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0, DisableCompression: true,
		ReadBufferSize: 256 << 10, WriteBufferSize: 64 << 10}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	out := make([]Download, n*reps)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			for r := range reps {
				t0 := start
				if r > 0 {
					t0 = time.Now()
				}
				out[i*reps+r] = get(ctx, client, url, t0, want)
			}
		})
	}
	wg.Wait()
	return out
}

func get(ctx context.Context, client *http.Client, url string, start time.Time, want int64) Download {
	var d Download
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		d.Err = err
		return d
	}
	resp, err := client.Do(req)
	if err != nil {
		d.Err = err
		return d
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		d.Err = fmt.Errorf("status %d", resp.StatusCode)
		return d
	}
	buf := make([]byte, 256<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 && d.Bytes == 0 {
			d.FirstByte = time.Since(start)
		}
		d.Bytes += int64(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			d.Err = err
			break
		}
	}
	d.LastByte = time.Since(start)
	if d.Err == nil && d.Bytes != want {
		d.Err = fmt.Errorf("got %d bytes, want %d", d.Bytes, want)
	}
	return d
}

// Summary condenses a herd's downloads.
type Summary struct {
	Clients                 int
	Errors                  int
	FirstByteP50, FirstByte time.Duration // median and worst
	LastByteP50, LastByte   time.Duration
	Bytes                   int64
	FirstErr                error
}

// Summarize reports the median and the worst of the downloads.
func Summarize(ds []Download) Summary {
	s := Summary{Clients: len(ds)}
	var fb, lb []time.Duration
	for _, d := range ds {
		if d.Err != nil {
			s.Errors++
			if s.FirstErr == nil {
				s.FirstErr = d.Err
			}
			continue
		}
		fb = append(fb, d.FirstByte)
		lb = append(lb, d.LastByte)
		s.Bytes += d.Bytes
	}
	if len(fb) == 0 {
		return s
	}
	sort.Slice(fb, func(i, j int) bool { return fb[i] < fb[j] })
	sort.Slice(lb, func(i, j int) bool { return lb[i] < lb[j] })
	s.FirstByteP50, s.FirstByte = fb[len(fb)/2], fb[len(fb)-1]
	s.LastByteP50, s.LastByte = lb[len(lb)/2], lb[len(lb)-1]
	return s
}

// waitHTTP polls url with client until it answers (any status) or the
// timeout passes.
func waitHTTP(client *http.Client, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer within %v: %w", url, timeout, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a process that is starting
	}
}

// NginxConf is an nginx configuration caching the file server at upstream
// (host:port, through the WAN proxy) and serving it on listen, with
// proxy_cache_lock and, when slice is set, the slice module.
func NginxConf(prefix, listen, upstream string, slice bool, asRoot bool) string {
	user := ""
	if asRoot {
		user = "user root;\n"
	}
	sliceConf := ""
	key := "$uri"
	if slice {
		sliceConf = "      slice 1m;\n      proxy_set_header Range $slice_range;\n"
		key = "$uri$slice_range"
	}
	return fmt.Sprintf(`%sworker_processes auto;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path %[2]s/client_temp;
  proxy_temp_path %[2]s/proxy_temp;
  fastcgi_temp_path %[2]s/fastcgi_temp;
  uwsgi_temp_path %[2]s/uwsgi_temp;
  scgi_temp_path %[2]s/scgi_temp;
  proxy_cache_path %[2]s/cache levels=1:2 keys_zone=outpost:16m max_size=20g inactive=1d use_temp_path=off;
  upstream fileserver {
    server %[3]s;
    keepalive 64;
  }
  server {
    listen %[4]s;
    location / {
      proxy_pass http://fileserver;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache outpost;
      proxy_cache_key %[5]s;
%[6]s      proxy_cache_lock on;
      proxy_cache_lock_timeout 1h;
      proxy_cache_lock_age 1h;
      proxy_cache_valid 200 206 1d;
      proxy_read_timeout 1h;
    }
  }
}
`, user, prefix, upstream, listen, key, sliceConf)
}
