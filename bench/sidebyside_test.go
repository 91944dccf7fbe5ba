package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/outposthq/outpost/pkg/freeport"
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

// placement is where a system under test runs: on loopback beside the
// benchmark, or in the server namespace of TwoHosts.
type placement struct {
	host    string // to listen on and to ask
	command func(name string, args ...string) *exec.Cmd
	client  *http.Client // the benchmark's own requests: readiness, warm-up
	suffix  string       // added to the systems' names
}

var loopback = &placement{host: "127.0.0.1", command: exec.Command, client: http.DefaultClient}

// startRelay starts the relay binary with its defaults; extra, if not
// empty, is more YAML for its config, and names the system.
func startRelay(tb testing.TB, at *placement, bin string, m *testutil.MinIO, wanAddr, extra string) *system {
	tb.Helper()
	dir := tb.TempDir()
	port := freePort(tb)
	// The region is set as the coordinator's credentials set it, so that
	// minio-go does not ask for the bucket's location first. Plain HTTP,
	// like the nginx it is measured against.
	conf := fmt.Sprintf("listen: %s:%d\ndata_dir: %s\nlog_level: warn\nplain_http: true\nfile_server:\n  endpoint: %s\n  region: us-east-1\n  bucket: %s\n  access_key: %s\n  secret_key: %s\n",
		at.host, port, dir, wanAddr, bucket, m.AccessKey, m.SecretKey) + extra + "\n"
	name := "outpost relay"
	if extra != "" {
		name += " (" + extra + ")"
	}
	name += at.suffix
	if err := os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := at.command(bin, "--config", filepath.Join(dir, "relay.yaml"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	base := fmt.Sprintf("http://%s:%d", at.host, port)
	if err := waitHTTP(at.client, base+"/healthz", 20*time.Second); err != nil {
		cmd.Process.Kill()
		tb.Fatal(err)
	}
	return &system{name: name, pid: cmd.Process.Pid,
		url: func(h string) string { return base + "/v1/blobs/sha256/" + h },
		stop: sync.OnceFunc(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		})}
}

// startNginx starts nginx as a caching proxy; listenOpts, if not empty,
// are more parameters of its listen directive (e.g. "sndbuf=256k"), and
// name the system.
func startNginx(tb testing.TB, at *placement, bin string, wanAddr string, slice bool, listenOpts string) *system {
	tb.Helper()
	prefix := tb.TempDir()
	os.Chmod(prefix, 0o755)
	port := freePort(tb)
	listen := fmt.Sprintf("%s:%d", at.host, port)
	if listenOpts != "" {
		listen += " " + listenOpts
	}
	conf := NginxConf(prefix, listen, wanAddr, slice, os.Geteuid() == 0)
	if err := os.WriteFile(filepath.Join(prefix, "nginx.conf"), []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := at.command(bin, "-p", prefix, "-c", filepath.Join(prefix, "nginx.conf"), "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	base := fmt.Sprintf("http://%s:%d", at.host, port)
	if err := waitHTTP(at.client, base+"/", 20*time.Second); err != nil {
		cmd.Process.Kill()
		log, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
		tb.Fatalf("%v\n%s", err, log)
	}
	name := "nginx proxy_cache+lock"
	if slice {
		name = "nginx slice+proxy_cache+lock"
	}
	if listenOpts != "" {
		name += " (listen " + listenOpts + ")"
	}
	name += at.suffix
	return &system{name: name, pid: cmd.Process.Pid,
		url: func(h string) string { return base + "/" + bucket + "/sha256/" + h },
		stop: sync.OnceFunc(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		})}
}

// freePort is a TCP port free on loopback, outside the ephemeral range
// (see freeport). Between two hosts the server namespace has nothing else
// listening, so a port free here is free there.
func freePort(tb testing.TB) int {
	tb.Helper()
	port, err := freeport.Port("127.0.0.1", true, false)
	if err != nil {
		tb.Fatal(err)
	}
	return port
}

type coldResult struct {
	sys      string
	clients  int
	summary  Summary
	upstream int64
	wanDone  time.Duration // from the herd's start to the last byte over the WAN
}

// coldHerd runs one cold herd and notes when the WAN carried its last byte,
// so that the report can tell the link's time from the cache's tail.
func coldHerd(sys *system, wan *WANProcess, n int, url string, size int) coldResult {
	wan.Reset()
	before := wan.Down()
	start := time.Now()
	ds := Herd(context.Background(), n, 1, url, int64(size))
	r := coldResult{sys: sys.name, clients: n, summary: Summarize(ds), upstream: wan.Down() - before}
	if last := wan.LastDown(); last.After(start) {
		r.wanDone = last.Sub(start)
	}
	return r
}

type warmResult struct {
	sys     string
	clients int
	runs    int
	// Medians over the runs, each of its own figure.
	throughput float64 // GiB/s
	serverCPU  float64 // s per GiB, the server's processes
	serverMin  float64 // and its lowest and highest run
	serverMax  float64
	clientCPU  float64 // s per GiB, the clients' process
	// totalCPU is server and clients together: on loopback the kernel's
	// TCP work for both ends is charged to whichever process runs it, so
	// only the sum is the cost of a GiB.
	totalCPU float64
	// Between two hosts, each computer's CPU busy time per GiB, whatever
	// process the kernel charged it to.
	serverHost, clientHost float64
	// rounds is each run's throughput, in round order, so that systems
	// can be compared round by round (they ran side by side).
	rounds []float64
	errors int
	err    error
}

// warmRun is one warm run of one system.
type warmRun struct {
	bytes                  int64
	wall                   time.Duration
	server, clients        time.Duration
	serverHost, clientHost time.Duration // between two hosts only
	errors                 int
	err                    error
}

// runner runs n clients getting url reps times each, measuring sys.
type runner func(sys *system, url string, n, reps int, want int64) warmRun

// onLoopback runs the clients in the benchmark process.
func onLoopback(sys *system, url string, n, reps int, want int64) warmRun {
	cpu0, _ := CPUTime(sys.pid)
	self0, _ := processCPU(os.Getpid()) // not its children: the servers and MinIO
	t0 := time.Now()
	ds := Herd(context.Background(), n, reps, url, want)
	wall := time.Since(t0)
	cpu1, _ := CPUTime(sys.pid)
	self1, _ := processCPU(os.Getpid())
	s := Summarize(ds)
	return warmRun{bytes: s.Bytes, wall: wall, server: cpu1 - cpu0, clients: self1 - self0, errors: s.Errors, err: s.FirstErr}
}

// warmRuns measures warm hits on every system, runs times at each number
// of clients, the systems taking turns within each round (and a different
// one going first each round), so that the other work on a shared machine
// weighs on all of them alike rather than on whichever ran while it peaked.
func warmRuns(systems []*system, hashes []string, size int, total int64, runs int, run runner) []warmResult {
	var out []warmResult
	for _, n := range warmClients() {
		reps := max(1, int(total/int64(size)/int64(n)))
		got := make([][]warmRun, len(systems))
		for r := range runs {
			for k := range systems {
				i := (k + r) % len(systems)
				got[i] = append(got[i], run(systems[i], systems[i].url(hashes[i]), n, reps, int64(size)))
			}
		}
		for i, sys := range systems {
			w := warmResult{sys: sys.name, clients: n, runs: runs}
			var srv, cli, tot, sh, ch []float64
			for _, r := range got[i] {
				w.errors += r.errors
				if w.err == nil {
					w.err = r.err
				}
				gib := float64(r.bytes) / (1 << 30)
				if gib == 0 {
					continue
				}
				w.rounds = append(w.rounds, gib/r.wall.Seconds())
				srv = append(srv, r.server.Seconds()/gib)
				cli = append(cli, r.clients.Seconds()/gib)
				tot = append(tot, (r.server+r.clients).Seconds()/gib)
				sh = append(sh, r.serverHost.Seconds()/gib)
				ch = append(ch, r.clientHost.Seconds()/gib)
			}
			w.throughput, w.serverCPU, w.clientCPU, w.totalCPU = median(w.rounds), median(srv), median(cli), median(tot)
			w.serverHost, w.clientHost = median(sh), median(ch)
			if len(srv) > 0 {
				w.serverMin, w.serverMax = slices.Min(srv), slices.Max(srv)
			}
			out = append(out, w)
		}
	}
	return out
}

// warmClients are the numbers of clients of the warm runs:
// OUTPOST_BENCH_WARM_CLIENTS (e.g. "1"), by default 1, 8 and 64.
func warmClients() []int {
	var out []int
	for _, f := range splitList(os.Getenv("OUTPOST_BENCH_WARM_CLIENTS"), ",") {
		if n, err := strconv.Atoi(f); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return []int{1, 8, 64}
	}
	return out
}

// splitList splits s at sep, trimmed, leaving out empty items.
func splitList(s, sep string) []string {
	var out []string
	for v := range strings.SplitSeq(s, sep) {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = append([]float64(nil), v...)
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// warmVariants starts the relay and nginx variants of the warm runs.
func warmVariants(b *testing.B, at *placement, bin, nginx string, m *testutil.MinIO, wanAddr string, relays, nginxes []string) []func() *system {
	var starts []func() *system
	for _, v := range relays {
		starts = append(starts, func() *system { return startRelay(b, at, bin, m, wanAddr, v) })
	}
	for _, v := range nginxes {
		starts = append(starts, func() *system { return startNginx(b, at, nginx, wanAddr, false, v) })
	}
	return starts
}

// warmUp puts a fresh object (from seed: one per system, so that nothing
// is warm anywhere) on the file server, fetches it
// once through sys, so that it is cached, and returns its hash.
func warmUp(b *testing.B, at *placement, sys *system, cl *minio.Client, seed, size int) string {
	hash := upload(b, cl, object(uint64(seed), size))
	if d := get(context.Background(), at.client, sys.url(hash), time.Now(), int64(size)); d.Err != nil {
		b.Fatalf("%s: warm-up: %v", sys.name, d.Err)
	}
	return hash
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
	warmN := envInt("OUTPOST_BENCH_WARM_RUNS", 7)
	// The warm hits alone, for trying a change to how hits are served:
	// the cold herds take most of the run's minutes.
	warmOnly := os.Getenv("OUTPOST_BENCH_WARM_ONLY") != ""
	// More relays, each with a line of config of its own, separated by
	// ";", in the warm runs only: a change to how hits are served, beside
	// the relay as it is. By default the relay with a fixed 256 KiB LAN
	// send buffer (off by default), to show what it does on loopback and
	// between two hosts; set empty for none.
	spec, ok := os.LookupEnv("OUTPOST_BENCH_RELAY_VARIANTS")
	if !ok {
		spec = "lan_send_buffer_bytes: 262144"
	}
	variants := splitList(spec, ";")

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
	// The WAN runs in a process of its own, as the uplink is not the
	// clients' CPU (see WANProcess).
	wan, err := StartWANProcess(os.Args[0], m.Endpoint, wanRate)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(wan.Close)

	// And nginx proxy_cache+lock with more listen parameters, e.g.
	// "sndbuf=256k" (";" between variants), in the warm runs only.
	nginxVariants := splitList(os.Getenv("OUTPOST_BENCH_NGINX_VARIANTS"), ";")
	starts := []func() *system{
		func() *system { return startRelay(b, loopback, bin, m, wan.Addr(), "") },
		func() *system { return startNginx(b, loopback, nginx, wan.Addr(), false, "") },
		func() *system { return startNginx(b, loopback, nginx, wan.Addr(), true, "") },
	}
	cold := len(starts)
	starts = append(starts, warmVariants(b, loopback, bin, nginx, m, wan.Addr(), variants, nginxVariants)...)
	// OUTPOST_BENCH_TWO_HOSTS=only: the warm hits between two hosts alone.
	twoHosts := os.Getenv("OUTPOST_BENCH_TWO_HOSTS")
	if twoHosts == "only" {
		starts = nil
	}
	var colds []coldResult
	var systems []*system
	var warmHashes []string
	for i, start := range starts {
		// Each system starts with an empty cache, and the others idle
		// while it is measured.
		sys := start()
		b.Cleanup(sys.stop)
		if !warmOnly && i < cold {
			big := object(uint64(100+i), size)
			bigHash := upload(b, cl, big)
			big = nil
			big2 := object(uint64(300+i), size)
			big2Hash := upload(b, cl, big2)
			big2 = nil
			colds = append(colds, coldHerd(sys, wan, clients, sys.url(bigHash), size))
			colds = append(colds, coldHerd(sys, wan, small, sys.url(big2Hash), size))
		}
		systems = append(systems, sys)
		warmHashes = append(warmHashes, warmUp(b, loopback, sys, cl, 200+i, warmSize))
	}
	warms := warmRuns(systems, warmHashes, warmSize, warmTotal, warmN, onLoopback)
	for _, sys := range systems {
		sys.stop()
	}

	// The same warm hits again between two emulated hosts, where each
	// computer's CPU is its own (see TwoHosts).
	var hostWarms []warmResult
	hostNote := ""
	if twoHosts == "0" {
		hostNote = "not run (OUTPOST_BENCH_TWO_HOSTS=0)"
	} else {
		hostWarms, hostNote = warmBetweenHosts(b, bin, nginx, m, cl, wan.Addr(), variants, nginxVariants, warmSize, warmTotal, warmN)
	}
	table := report(size, clients, wanRate, warmSize, warmN, colds, warms, hostWarms, hostNote)
	table += fmt.Sprintf("Load average at the start and the end (2 shared cores): %s / %s\n", load0, loadavg())
	fmt.Print(table)
	if out := os.Getenv("OUTPOST_BENCH_OUT"); out != "" {
		os.WriteFile(out, []byte(table), 0o644)
	}
	if len(colds) == 0 {
		return
	}
	r := colds[0]
	b.ReportMetric(float64(r.upstream)/float64(size), "relay-upstream-x-object")
	b.ReportMetric(r.summary.FirstByte.Seconds()*1000, "relay-max-first-byte-ms")
	b.ReportMetric(r.summary.LastByte.Seconds(), "relay-max-last-byte-s")
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func report(size, clients int, wanRate float64, warmSize, warmN int, colds []coldResult, warms, hostWarms []warmResult, hostNote string) string {
	var sb strings.Builder
	if len(colds) > 0 {
		coldTable(&sb, size, clients, wanRate, colds)
	}
	if len(warms) > 0 {
		warmTable(&sb, warmSize, warmN, warms, false)
	}
	if len(hostWarms) > 0 {
		warmTable(&sb, warmSize, warmN, hostWarms, true)
	}
	if hostNote != "" {
		fmt.Fprintf(&sb, "\nWarm hits between two hosts: %s\n", hostNote)
	}
	sb.WriteString("\nCommand: make bench (or: go test -run '^$' -bench SideBySide -benchtime 1x ./bench/)\n")
	return sb.String()
}

func coldTable(sb *strings.Builder, size, clients int, wanRate float64, colds []coldResult) {
	ideal := time.Duration(float64(size) / wanRate * float64(time.Second))
	fmt.Fprintf(sb, "\n### Cold herd: clients at once, one uncached %d MiB object each run, WAN cap %.0f MB/s (size/rate = %.2f s)\n\n",
		size>>20, wanRate/1e6, ideal.Seconds())
	sb.WriteString("| clients | system | upstream bytes (× object) | first byte p50 / max | last byte p50 / max | last WAN byte | max last byte ÷ (size/rate) | relay ÷ this, max last byte | failed |\n|---|---|---|---|---|---|---|---|---|\n")
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
			fmt.Fprintf(sb, "| %d | %s | %.0f MiB (%.3f×) | %s / %s | %.2f s / %.2f s | %.2f s | %.2f | %s | %d |\n", c.clients, c.sys, mib(c.upstream),
				float64(c.upstream)/float64(size), ms(s.FirstByteP50), ms(s.FirstByte), s.LastByteP50.Seconds(), s.LastByte.Seconds(),
				c.wanDone.Seconds(), s.LastByte.Seconds()/ideal.Seconds(), ratio, s.Errors)
			if s.FirstErr != nil {
				fmt.Fprintf(sb, "|  | first error: %v | | | | | | | |\n", s.FirstErr)
			}
		}
	}
}

func warmTable(sb *strings.Builder, warmSize, warmN int, warms []warmResult, hosts bool) {
	ref := "outpost relay" // the relay as configured by default
	if hosts {
		fmt.Fprintf(sb, "\n### Warm hits between two hosts: the caches in one network namespace, the clients in another, a veth pair between them, each side on a CPU of its own that also processes the packets it receives; a cached %d MiB object, about 2 GiB a run, median of %d runs\n\n",
			warmSize>>20, warmN)
		sb.WriteString("| clients | system | throughput | server host's CPU per GiB | its server processes' | client host's CPU per GiB | relay ÷ this: throughput, server host's CPU/GiB | failed |\n|---|---|---|---|---|---|---|---|\n")
		ref += ", two hosts"
	} else {
		fmt.Fprintf(sb, "\n### Warm hits on loopback: a cached %d MiB object, each run about 2 GiB in total; median of %d runs, the systems taking turns\n\n", warmSize>>20, warmN)
		sb.WriteString("| clients | system | throughput | server CPU per GiB (lowest–highest run) | clients' CPU per GiB (benchmark process) | server + clients | relay ÷ this: throughput, server CPU/GiB, server + clients | failed |\n|---|---|---|---|---|---|---|---|\n")
	}
	for _, n := range warmClients() {
		var relay warmResult
		for _, w := range warms {
			if w.clients == n && w.sys == ref {
				relay = w
			}
		}
		for _, w := range warms {
			if w.clients != n {
				continue
			}
			ratio := ""
			if w.sys != ref && w.throughput > 0 && w.serverCPU > 0 {
				if hosts {
					ratio = fmt.Sprintf("%.2f×, %.2f×", relay.throughput/w.throughput, relay.serverHost/w.serverHost)
				} else {
					ratio = fmt.Sprintf("%.2f×, %.2f×, %.2f×", relay.throughput/w.throughput, relay.serverCPU/w.serverCPU,
						relay.totalCPU/w.totalCPU)
				}
				if len(relay.rounds) == len(w.rounds) {
					var per []float64
					ahead := 0
					for r := range w.rounds {
						per = append(per, relay.rounds[r]/w.rounds[r])
						if relay.rounds[r] >= w.rounds[r] {
							ahead++
						}
					}
					ratio += fmt.Sprintf(" (throughput round by round: median %.2f×, ahead in %d of %d)", median(per), ahead, len(per))
				}
			}
			if hosts {
				fmt.Fprintf(sb, "| %d | %s | %.2f GiB/s | %.3f s | %.3f s | %.3f s | %s | %d |\n", n, w.sys, w.throughput, w.serverHost,
					w.serverCPU, w.clientHost, ratio, w.errors)
			} else {
				fmt.Fprintf(sb, "| %d | %s | %.2f GiB/s | %.3f s (%.3f–%.3f) | %.3f s | %.3f s | %s | %d |\n", n, w.sys, w.throughput, w.serverCPU,
					w.serverMin, w.serverMax, w.clientCPU, w.totalCPU, ratio, w.errors)
			}
			if w.err != nil {
				fmt.Fprintf(sb, "|  | first error: %v | | | | | | |\n", w.err)
			}
		}
	}
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
