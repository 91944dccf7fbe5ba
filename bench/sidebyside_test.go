package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/outposthq/outpost/pkg/testutil"
)

const bucket = "outpost-artifacts"

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// object is deterministic pseudo-random bytes, so that nothing compresses.
func object(seed uint64, n int) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	return b
}

func upload(tb testing.TB, cl *minio.Client, data []byte) string {
	tb.Helper()
	s := sha256.Sum256(data)
	hash := hex.EncodeToString(s[:])
	if _, err := cl.PutObject(context.Background(), bucket, "sha256/"+hash, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{}); err != nil {
		tb.Fatal(err)
	}
	return hash
}

// system is a cache under test, started fresh (empty cache).
type system struct {
	name string
	url  func(hash string) string
	pid  int
	stop func()
}

func startRelay(tb testing.TB, bin string, m *testutil.MinIO, wan *WAN) *system {
	tb.Helper()
	dir := tb.TempDir()
	port := freePort(tb)
	// The region is set as the coordinator's credentials set it, so that
	// minio-go does not ask for the bucket's location first. Plain HTTP,
	// like the nginx it is measured against.
	conf := fmt.Sprintf("listen: 127.0.0.1:%d\ndata_dir: %s\nlog_level: warn\nplain_http: true\nfile_server:\n  endpoint: %s\n  region: us-east-1\n  bucket: %s\n  access_key: %s\n  secret_key: %s\n",
		port, dir, wan.Addr(), bucket, m.AccessKey, m.SecretKey)
	if err := os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", filepath.Join(dir, "relay.yaml"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := WaitHTTP(base+"/healthz", 20*time.Second); err != nil {
		cmd.Process.Kill()
		tb.Fatal(err)
	}
	return &system{name: "outpost relay", pid: cmd.Process.Pid,
		url: func(h string) string { return base + "/v1/blobs/sha256/" + h },
		stop: func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}}
}

func startNginx(tb testing.TB, bin string, wan *WAN, slice bool) *system {
	tb.Helper()
	prefix := tb.TempDir()
	os.Chmod(prefix, 0o755)
	port := freePort(tb)
	conf := NginxConf(prefix, fmt.Sprintf("127.0.0.1:%d", port), wan.Addr(), slice, os.Geteuid() == 0)
	if err := os.WriteFile(filepath.Join(prefix, "nginx.conf"), []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", prefix, "-c", filepath.Join(prefix, "nginx.conf"), "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := WaitHTTP(base+"/", 20*time.Second); err != nil {
		cmd.Process.Kill()
		log, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
		tb.Fatalf("%v\n%s", err, log)
	}
	name := "nginx proxy_cache+lock"
	if slice {
		name = "nginx slice+proxy_cache+lock"
	}
	return &system{name: name, pid: cmd.Process.Pid,
		url: func(h string) string { return base + "/" + bucket + "/sha256/" + h },
		stop: func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}}
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := netListen()
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*netTCPAddr).Port
}

type coldResult struct {
	sys      string
	clients  int
	summary  Summary
	upstream int64
}

type warmResult struct {
	sys     string
	clients int
	bytes   int64
	wall    time.Duration
	cpu     time.Duration
	errors  int
	err     error
}

// BenchmarkSideBySide runs the relay and nginx (proxy_cache with
// proxy_cache_lock, and again with the slice module) in front of the same
// MinIO through one shared WAN cap, and prints a table. It runs its
// scenarios once whatever b.N is.
func BenchmarkSideBySide(b *testing.B) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr == nil {
			nginx = "/usr/sbin/nginx"
		} else {
			b.Skip("nginx is not installed: `make bench` installs it (apt-get install -y nginx)")
		}
	}
	size := envInt("OUTPOST_BENCH_SIZE_MIB", 256) << 20
	clients := envInt("OUTPOST_BENCH_CLIENTS", 50)
	// A smaller herd too, where this 2-core machine is not the limit.
	small := envInt("OUTPOST_BENCH_SMALL_HERD", 10)
	wanRate := float64(envInt("OUTPOST_BENCH_WAN_MBPS", 50)) * 1e6
	warmSize := envInt("OUTPOST_BENCH_WARM_MIB", 32) << 20
	warmTotal := int64(envInt("OUTPOST_BENCH_WARM_TOTAL_MIB", 2048)) << 20

	load0 := loadavg()
	root := testutil.RepoRoot(b)
	bin := filepath.Join(b.TempDir(), "outpost-relay")
	build := exec.Command("go", "build", "-o", bin, "./relay/cmd/outpost-relay")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build the relay: %v\n%s", err, out)
	}

	m := testutil.StartMinIO(b)
	m.MakeBucket(b, bucket)
	cl := m.Client(b)
	// nginx reads anonymously (it cannot sign S3 requests); the relay
	// signs with keys as it does in production.
	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["*"]},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::` + bucket + `/*"]}]}`
	if err := cl.SetBucketPolicy(context.Background(), bucket, policy); err != nil {
		b.Fatal(err)
	}
	wan, err := StartWAN(m.Endpoint, wanRate)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(wan.Close)

	starts := []func() *system{
		func() *system { return startRelay(b, bin, m, wan) },
		func() *system { return startNginx(b, nginx, wan, false) },
		func() *system { return startNginx(b, nginx, wan, true) },
	}
	var colds []coldResult
	var warms []warmResult
	for i, start := range starts {
		// A fresh object per system, so that nothing is warm anywhere.
		big := object(uint64(100+i), size)
		bigHash := upload(b, cl, big)
		warm := object(uint64(200+i), warmSize)
		warmHash := upload(b, cl, warm)
		big, warm = nil, nil

		big2 := object(uint64(300+i), size)
		big2Hash := upload(b, cl, big2)
		big2 = nil

		sys := start()
		before := wan.Down()
		ds := Herd(context.Background(), clients, 1, sys.url(bigHash), int64(size))
		colds = append(colds, coldResult{sys: sys.name, clients: clients, summary: Summarize(ds), upstream: wan.Down() - before})
		before = wan.Down()
		ds = Herd(context.Background(), small, 1, sys.url(big2Hash), int64(size))
		colds = append(colds, coldResult{sys: sys.name, clients: small, summary: Summarize(ds), upstream: wan.Down() - before})

		// Warm hits: the object is fetched once, then read from the cache.
		if d := Herd(context.Background(), 1, 1, sys.url(warmHash), int64(warmSize)); d[0].Err != nil {
			b.Fatalf("%s: warm-up: %v", sys.name, d[0].Err)
		}
		for _, n := range []int{1, 8, 64} {
			// Three runs, the median by throughput: the machine is shared.
			var runs []warmResult
			for range 3 {
				reps := max(1, int(warmTotal/int64(warmSize)/int64(n)))
				cpu0, _ := CPUTime(sys.pid)
				t0 := time.Now()
				ds := Herd(context.Background(), n, reps, sys.url(warmHash), int64(warmSize))
				wall := time.Since(t0)
				cpu1, _ := CPUTime(sys.pid)
				s := Summarize(ds)
				runs = append(runs, warmResult{sys: sys.name, clients: n, bytes: s.Bytes, wall: wall, cpu: cpu1 - cpu0,
					errors: s.Errors, err: s.FirstErr})
			}
			sort.Slice(runs, func(i, j int) bool {
				return float64(runs[i].bytes)/runs[i].wall.Seconds() < float64(runs[j].bytes)/runs[j].wall.Seconds()
			})
			warms = append(warms, runs[1])
		}
		sys.stop()
	}
	table := report(size, clients, wanRate, warmSize, colds, warms)
	table += fmt.Sprintf("Load average at the start and the end (2 shared cores): %s / %s\n", load0, loadavg())
	fmt.Print(table)
	if out := os.Getenv("OUTPOST_BENCH_OUT"); out != "" {
		os.WriteFile(out, []byte(table), 0o644)
	}
	r := colds[0]
	b.ReportMetric(float64(r.upstream)/float64(size), "relay-upstream-x-object")
	b.ReportMetric(r.summary.FirstByte.Seconds()*1000, "relay-max-first-byte-ms")
	b.ReportMetric(r.summary.LastByte.Seconds(), "relay-max-last-byte-s")
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func report(size, clients int, wanRate float64, warmSize int, colds []coldResult, warms []warmResult) string {
	var sb strings.Builder
	ideal := time.Duration(float64(size) / wanRate * float64(time.Second))
	fmt.Fprintf(&sb, "\n### Cold herd: clients at once, one uncached %d MiB object each run, WAN cap %.0f MB/s (size/rate = %.2f s)\n\n",
		size>>20, wanRate/1e6, ideal.Seconds())
	sb.WriteString("| clients | system | upstream bytes (× object) | first byte p50 / max | last byte p50 / max | max last byte ÷ (size/rate) | relay ÷ this, max last byte | failed |\n|---|---|---|---|---|---|---|---|\n")
	relayLast := map[int]time.Duration{}
	for _, c := range colds {
		if strings.HasPrefix(c.sys, "outpost") {
			relayLast[c.clients] = c.summary.LastByte
		}
	}
	for _, n := range []int{clients, -1} {
		for _, c := range colds {
			if (n > 0 && c.clients != n) || (n < 0 && c.clients == clients) {
				continue
			}
			s := c.summary
			ratio := ""
			if !strings.HasPrefix(c.sys, "outpost") && s.LastByte > 0 {
				ratio = fmt.Sprintf("%.2f", relayLast[c.clients].Seconds()/s.LastByte.Seconds())
			}
			fmt.Fprintf(&sb, "| %d | %s | %.0f MiB (%.3f×) | %s / %s | %.2f s / %.2f s | %.2f | %s | %d |\n", c.clients, c.sys, mib(c.upstream),
				float64(c.upstream)/float64(size), ms(s.FirstByteP50), ms(s.FirstByte), s.LastByteP50.Seconds(), s.LastByte.Seconds(),
				s.LastByte.Seconds()/ideal.Seconds(), ratio, s.Errors)
			if s.FirstErr != nil {
				fmt.Fprintf(&sb, "|  | first error: %v | | | | | | |\n", s.FirstErr)
			}
		}
	}
	fmt.Fprintf(&sb, "\n### Warm hits: a cached %d MiB object, each run about 2 GiB in total, median of 3\n\n", warmSize>>20)
	sb.WriteString("| clients | system | throughput | server CPU per GiB | relay ÷ this: throughput, CPU/GiB | failed |\n|---|---|---|---|---|---|\n")
	by := map[string]map[int]warmResult{}
	for _, w := range warms {
		if by[w.sys] == nil {
			by[w.sys] = map[int]warmResult{}
		}
		by[w.sys][w.clients] = w
	}
	for _, n := range []int{1, 8, 64} {
		var relay warmResult
		for _, w := range warms {
			if w.clients == n && strings.HasPrefix(w.sys, "outpost") {
				relay = w
			}
		}
		for _, w := range warms {
			if w.clients != n {
				continue
			}
			gib := float64(w.bytes) / (1 << 30)
			thr := gib / w.wall.Seconds()
			cpu := w.cpu.Seconds() / gib
			ratio := ""
			if !strings.HasPrefix(w.sys, "outpost") {
				rg := float64(relay.bytes) / (1 << 30)
				ratio = fmt.Sprintf("%.2f×, %.2f×", (rg/relay.wall.Seconds())/thr, (relay.cpu.Seconds()/rg)/cpu)
			}
			fmt.Fprintf(&sb, "| %d | %s | %.2f GiB/s | %.2f s | %s | %d |\n", n, w.sys, thr, cpu, ratio, w.errors)
		}
	}
	sb.WriteString("\nCommand: make bench (or: go test -run '^$' -bench SideBySide -benchtime 1x ./bench/)\n")
	return sb.String()
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", d.Seconds()*1000) }
