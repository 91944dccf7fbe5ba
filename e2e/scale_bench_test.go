package e2e

import (
	"bufio"
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator"
	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/pkg/testutil"
)

// BenchmarkCoordinatorAtScale: a real coordinator in this process and a
// fleet of real agents (QUIC, memberlist with office timers, the policy
// verified by each) in outpost-loadgen child processes, one per office,
// every office checking in every 2 minutes. Over one whole interval it
// measures the coordinator process's CPU and memory (the children are
// other processes), the check-in messages it took, and each agent's
// memory; then it makes one change for the whole fleet (a named policy
// targeting every office) and times it to 50 % and 99 % of the agents. With the roll-up (the
// design) and without (every agent checks in itself).
//
//	go test -run '^$' -bench CoordinatorAtScale -benchtime 1x -timeout 60m ./e2e/
//
// OUTPOST_BENCH_AGENTS (default 2000), OUTPOST_BENCH_OFFICES (20) and
// OUTPOST_BENCH_INTERVAL (2m) change the fleet; OUTPOST_BENCH_PROBE_INTERVAL
// the agents' gossip probe interval (default 3s: with their own 800ms, two
// thousand agents on two cores take most of the machine at rest; "agent"
// gives them their own); OUTPOST_BENCH_PPROF=PORT has each office's
// outpost-loadgen serve Go's profiles on 127.0.0.1:PORT+n (office n).
func BenchmarkCoordinatorAtScale(b *testing.B) {
	agents, offices := envInt("OUTPOST_BENCH_AGENTS", 2000), envInt("OUTPOST_BENCH_OFFICES", 20)
	for _, rollup := range []bool{true, false} {
		b.Run(fmt.Sprintf("agents=%d/offices=%d/rollup=%v", agents, offices, rollup), func(b *testing.B) {
			benchScale(b, agents, offices, rollup)
		})
	}
}

var (
	loadgenOnce sync.Once
	loadgenBin  string
	loadgenErr  error
)

func loadgenBinary(tb testing.TB) string {
	tb.Helper()
	loadgenOnce.Do(func() {
		dir := plugins(tb) // a temporary directory removed at the end
		cmd := exec.Command("go", "build", "-o", dir, "./loadgen/cmd/outpost-loadgen")
		cmd.Dir = testutil.RepoRoot(tb)
		if out, err := cmd.CombinedOutput(); err != nil {
			loadgenErr = fmt.Errorf("build outpost-loadgen: %v\n%s", err, out)
		}
		loadgenBin = filepath.Join(dir, "outpost-loadgen")
	})
	if loadgenErr != nil {
		tb.Fatal(loadgenErr)
	}
	return loadgenBin
}

// child is one office's agents in an outpost-loadgen process.
type child struct {
	cmd    *exec.Cmd
	ready  chan struct{}
	exited chan struct{}
	stderr string // its log file
	mu     sync.Mutex
	revs   map[uint64]int // agents by revision, as last printed
}

func (ch *child) holding(rev uint64) int {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	n := 0
	for r, k := range ch.revs {
		if r >= rev {
			n += k
		}
	}
	return n
}

// newest is the newest revision any of its agents holds.
func (ch *child) newest() uint64 {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	var n uint64
	for r := range ch.revs {
		n = max(n, r)
	}
	return n
}

func startLoadgen(b *testing.B, c *coordinatortest.Harness, office string, n int, firstIP, dir string) *child {
	b.Helper()
	cmd := exec.Command(loadgenBinary(b), "--coordinator", c.QUIC, "--ca-fingerprint", c.CA, "--token", c.EnrollToken(office, "agent", n),
		"--agents", strconv.Itoa(n), "--first-ip", firstIP, "--data-dir", dir, "--plugins-dir", plugins(b), "--every", "100ms", "--log-level", "error")
	if d := cmp.Or(os.Getenv("OUTPOST_BENCH_PROBE_INTERVAL"), "3s"); d != "agent" {
		cmd.Args = append(cmd.Args, "--probe-interval", d)
	}
	// OUTPOST_BENCH_PPROF=PORT serves each child's Go profiles on
	// 127.0.0.1:PORT+n, n its office's number, to see where a fleet's CPU goes.
	if p, err := strconv.Atoi(os.Getenv("OUTPOST_BENCH_PPROF")); err == nil && p > 0 {
		n, _ := strconv.Atoi(strings.TrimPrefix(office, "office"))
		cmd.Args = append(cmd.Args, "--pprof", fmt.Sprintf("127.0.0.1:%d", p+n))
	}
	// Twenty such processes share two cores: with one P each, the Go
	// runtime does not wake threads to look for work another P could take,
	// which was a third of an idle office's CPU.
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	dieWithParent(cmd)
	logf, err := os.Create(filepath.Join(filepath.Dir(dir), filepath.Base(dir)+".log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	ch := &child{cmd: cmd, ready: make(chan struct{}), exited: make(chan struct{}), stderr: logf.Name(), revs: map[uint64]int{}}
	b.Cleanup(func() {
		// A graceful leave, unless the machine is too busy for one.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-ch.exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-ch.exited
		}
	})
	go func() {
		defer close(ch.exited)
		s := bufio.NewScanner(out)
		for s.Scan() {
			line := s.Text()
			if strings.Contains(line, "agents running after") {
				close(ch.ready)
				continue
			}
			_, counts, ok := strings.Cut(line, "revisions:")
			if !ok {
				continue
			}
			revs := map[uint64]int{}
			for _, f := range strings.Fields(counts) {
				r, k, _ := strings.Cut(strings.TrimPrefix(f, "r"), "=")
				rv, _ := strconv.ParseUint(r, 10, 64)
				kv, _ := strconv.Atoi(k)
				revs[rv] = kv
			}
			ch.mu.Lock()
			ch.revs = revs
			ch.mu.Unlock()
		}
		cmd.Wait()
	}()
	return ch
}

// procStatus reads a field of /proc/PID/status in KiB.
func procStatus(pid, field string) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			v, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return v
		}
	}
	return 0
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// machineSeconds is the CPU time this machine's processors have been busy
// (user, nice, system, interrupts) and stolen by the hypervisor for other
// machines, from /proc/stat (clock ticks of 10 ms). Beside the fleet's and
// the coordinator's own, they tell how much of the two cores a run had.
func machineSeconds() (busy, steal float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	v := make([]float64, 9)
	for i := 1; i < 9; i++ {
		v[i], _ = strconv.ParseFloat(f[i], 64)
	}
	// user nice system idle iowait irq softirq steal
	return (v[1] + v[2] + v[3] + v[6] + v[7]) / 100, v[8] / 100
}

// fleetCPUSeconds is the CPU the loadgen children have used (user and
// system, in clock ticks of 10 ms).
func fleetCPUSeconds(children []*child) float64 {
	var total float64
	for _, ch := range children {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", ch.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// The fields after the command name, which is in parentheses.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 12 {
			u, _ := strconv.ParseFloat(f[11], 64)
			s, _ := strconv.ParseFloat(f[12], 64)
			total += (u + s) / 100
		}
	}
	return total
}

func benchScale(b *testing.B, agents, offices int, rollup bool) {
	interval := 2 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("OUTPOST_BENCH_INTERVAL")); err == nil && d >= 5*time.Second {
		interval = d
	}
	c := coordinatortest.New(b, coordinatortest.WithConfig(func(cfg *coordinator.Config) { cfg.DirectCheckins = !rollup }))
	per := agents / offices
	dir := memDir(b)
	var children []*child
	started := time.Now()
	waitReady := func(ch *child) {
		select {
		case <-ch.ready:
		case <-ch.exited:
			log, _ := os.ReadFile(ch.stderr)
			b.Fatalf("outpost-loadgen exited before its agents ran:\n%s", log[max(0, len(log)-2000):])
		case <-time.After(20 * time.Minute):
			b.Fatalf("the fleet did not start in 20 minutes")
		}
	}
	// One office enrols at a time and settles before the next: two
	// thousand enrolments at once are a storm no fleet makes, and on this
	// machine one office's join storm beside the others' probes starved
	// them into missing acks, whose indirect probes and refutations cost
	// more CPU still, until no office could settle.
	for o := range offices {
		if o > 0 {
			waitReady(children[o-1])
			time.Sleep(10 * time.Second)
		}
		name := fmt.Sprintf("office%02d", o)
		c.CreateOffice(name, map[string]any{"checkin_interval": interval.String()})
		c.Apply(name, "items: []\n")
		children = append(children, startLoadgen(b, c, name, per, fmt.Sprintf("127.%d.0.1", 100+o), filepath.Join(dir, name)))
	}
	for _, ch := range children {
		waitReady(ch)
	}
	b.Logf("%d agents in %d offices running after %v", per*offices, offices, time.Since(started).Round(time.Second))
	// One interval to settle (every agent's first check-ins, the office
	// electing its roll-up member), then one measured.
	time.Sleep(interval)
	connected := c.Metric("outpost_coordinator_members_connected")
	cpu0, fleet0, msgs0, carried0 := cpuSeconds(), fleetCPUSeconds(children), c.Metric("outpost_coordinator_checkins_total"), labelled(c, "outpost_coordinator_rollup_reports_total", "result", "kept")
	time.Sleep(interval) // the measurement is a rate over one interval
	cpu := cpuSeconds() - cpu0
	fleetIdle := (fleetCPUSeconds(children) - fleet0) / interval.Seconds() // cores
	msgs := c.Metric("outpost_coordinator_checkins_total") - msgs0
	carried := labelled(c, "outpost_coordinator_rollup_reports_total", "result", "kept") - carried0
	self := strconv.Itoa(os.Getpid())
	var fleetRSS float64
	for _, ch := range children {
		fleetRSS += procStatus(strconv.Itoa(ch.cmd.Process.Pid), "VmRSS")
	}
	b.ReportMetric(connected, "connected")
	b.ReportMetric(msgs, "checkin-msgs/interval")
	b.ReportMetric(carried, "carried-checkins/interval")
	b.ReportMetric(cpu/interval.Seconds()*100, "coord-cpu-%")
	// What the simulated fleet itself takes of this machine's cores: on
	// two cores it bounds how fast a fleet-wide rollout can go here.
	b.ReportMetric(fleetIdle*100, "fleet-idle-cpu-%")
	b.ReportMetric(procStatus(self, "VmRSS")/1024, "coord-rss-MiB")
	b.ReportMetric(procStatus(self, "VmHWM")/1024, "coord-peak-rss-MiB")
	b.ReportMetric(fleetRSS/float64(per*offices), "agent-rss-KiB")

	// One change for the whole fleet, as an admin makes it: a named policy
	// that targets every office. The API publishes each office's next
	// revision; the rollout is timed from the call (what the admin sees)
	// and, per office, from the call until 99 % of it holds its revision.
	// Policy only: no plugin processes.
	var names []string
	for o := range offices {
		names = append(names, fmt.Sprintf("office%02d", o))
	}
	// Every agent holds its office's revision now; any newer one is this
	// change's (nothing else is published meanwhile), so the watch starts
	// with the call, not with its answer: offices that have the change
	// before the API answers count when they have it.
	revs := make([]uint64, offices)
	for o, ch := range children {
		revs[o] = ch.newest() + 1
	}
	start, fleetStart, coordStart := time.Now(), fleetCPUSeconds(children), cpuSeconds()
	busyStart, stealStart := machineSeconds()
	load, _ := os.ReadFile("/proc/loadavg")
	var mu sync.Mutex
	var applied time.Duration
	go func() {
		var out struct {
			Published map[string]uint64 `json:"published"`
		}
		// force: the same empty items as the offices', which would
		// otherwise be no change at all.
		c.MustDo("PUT", "/v1/policies/fleet-wide?force=true", fmt.Sprintf("targets: {offices: [%s]}\nitems: []\n", strings.Join(names, ", ")), &out)
		mu.Lock()
		defer mu.Unlock()
		applied = time.Since(start)
		for o, name := range names {
			if out.Published[name] < revs[o] {
				b.Errorf("office %s published at revision %d, older than the %d expected", name, out.Published[name], revs[o])
			}
		}
	}()
	spread := make([]time.Duration, offices) // from the call until 99 % of the office
	var p50, p99, all time.Duration
	total := per * offices
	for time.Since(start) < 2*time.Minute && all == 0 {
		have, now := 0, time.Since(start)
		mu.Lock()
		for o, ch := range children {
			k := ch.holding(revs[o])
			have += k
			if spread[o] == 0 && 100*k >= 99*per {
				spread[o] = now
			}
		}
		mu.Unlock()
		if p50 == 0 && 2*have >= total {
			p50 = now
		}
		if p99 == 0 && 100*have >= 99*total {
			p99 = now
		}
		if have == total {
			all = now
		}
		time.Sleep(20 * time.Millisecond)
	}
	// CPU the rollout took, above what the fleet and coordinator take idle.
	took := time.Since(start).Seconds()
	rolloutCPU := fleetCPUSeconds(children) - fleetStart - fleetIdle*took + cpuSeconds() - coordStart - cpu/interval.Seconds()*took
	if p99 == 0 {
		b.Logf("the rollout did not reach 99%% of the agents in 2 minutes")
		p99 = -1
	}
	if all == 0 {
		b.Logf("the rollout did not reach every agent in 2 minutes")
		all = -1
	}
	b.Logf("the rollout took %.1f s of CPU above idle (fleet and coordinator); the fleet takes %.2f cores idle", rolloutCPU, fleetIdle)
	b.ReportMetric(rolloutCPU, "rollout-cpu-s")
	// What the rest of the machine took meanwhile: the figures above move
	// with it on a shared machine.
	busy, steal := machineSeconds()
	others := (busy - busyStart) - (fleetCPUSeconds(children) - fleetStart) - (cpuSeconds() - coordStart)
	b.Logf("meanwhile the rest of the machine (other processes, and interrupt work not charged to a process) took %.2f cores and the hypervisor stole %.2f; load average at the call: %s",
		max(others, 0)/took, (steal-stealStart)/took, strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "))
	b.ReportMetric(max(others, 0)/took, "others-cores")
	b.ReportMetric((steal-stealStart)/took, "steal-cores")
	mu.Lock()
	b.Logf("the API published the %d offices in %v; each office at 99 %%, from the call: %v", offices, applied.Round(time.Millisecond), spread)
	b.ReportMetric(applied.Seconds(), "api-apply-s")
	mu.Unlock()
	b.ReportMetric(slices.Max(spread).Seconds(), "office-99pct-max-s")
	b.ReportMetric(p50.Seconds(), "rollout-p50-s")
	b.ReportMetric(p99.Seconds(), "rollout-p99-s")
	b.ReportMetric(all.Seconds(), "rollout-all-s") // the last agent: 100 %
}
