package gossip

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
)

// The failure-detection figures: an office of real memberlist nodes with
// the timers agents use (LAN), some of them in a child process that is
// killed (SIGKILL) or starved of CPU (SIGSTOP, then SIGCONT) — what a
// crashed or overloaded computer looks like to its office.

const childEnv = "OUTPOST_GOSSIP_BENCH_CHILD" // "ip,ip,...;seed;hex key;hex pass key seed"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		runChild(spec)
		return
	}
	os.Exit(m.Run())
}

// runChild runs members until it is killed.
func runChild(spec string) {
	parts := strings.Split(spec, ";")
	key, _ := hex.DecodeString(parts[2])
	seed, _ := hex.DecodeString(parts[3])
	passPriv = ed25519.NewKeyFromSeed(seed)
	passKey = passPriv.Public().(ed25519.PublicKey)
	for _, ip := range strings.Split(parts[0], ",") {
		n, err := New(member(Config{Name: "child-" + strings.ReplaceAll(ip, ".", "-"), Bind: ip + ":0", Keys: [][]byte{key}, LAN: true, SuspicionMult: benchSuspicionMult()}), logging.Discard())
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		go n.Run(context.Background())
		<-n.Ready()
		for range 5 { // a busy office may miss one attempt
			if _, err = n.Join([]string{parts[1]}); err == nil {
				break
			}
		}
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
	}
	fmt.Println("ready")
	select {}
}

type office struct {
	nodes  []*Node
	cancel context.CancelFunc
	wg     sync.WaitGroup
	key    []byte
}

func startOffice(tb testing.TB, n int, subnet string) *office {
	tb.Helper()
	o := &office{key: make([]byte, 32)}
	rand.Read(o.key)
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	tb.Cleanup(o.stop)
	for i := range n {
		node, err := New(member(Config{Name: fmt.Sprintf("m%03d", i), Bind: fmt.Sprintf("%s.%d:0", subnet, i+1), Keys: [][]byte{o.key}, LAN: true, SuspicionMult: benchSuspicionMult()}), logging.Discard())
		if err != nil {
			tb.Fatal(err)
		}
		o.wg.Add(1)
		go func() { defer o.wg.Done(); node.Run(ctx) }()
		<-node.Ready()
		if i > 0 {
			// Up to five random members each, as the coordinator hands an
			// agent: one seed for all is a hot spot, and with one seed each
			// a member that missed news of a later join waits for
			// memberlist's full exchange (every two minutes at 200).
			var seeds []string
			for range min(5, len(o.nodes)) {
				seeds = append(seeds, o.nodes[mrand.IntN(len(o.nodes))].Addr())
			}
			if _, err := node.Join(seeds); err != nil {
				tb.Fatal(err)
			}
		}
		o.nodes = append(o.nodes, node)
	}
	return o
}

func (o *office) stop() { o.cancel(); o.wg.Wait() }

// waitAll waits until every node sees want peers.
func (o *office) waitAll(tb testing.TB, want int, within time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		ok := true
		for _, n := range o.nodes {
			if len(n.Peers()) != want {
				ok = false
				break
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the office did not settle at %d peers each", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startChild runs members on ips in a child process joined to the office.
func startChild(tb testing.TB, o *office, ips []string) *exec.Cmd {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(ips, ",")+";"+o.nodes[0].Addr()+";"+hex.EncodeToString(o.key)+";"+hex.EncodeToString(passPriv.Seed()))
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		tb.Fatalf("child members: %q", line)
	}
	return cmd
}

func pct(sorted []time.Duration, p float64) time.Duration {
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// BenchmarkKilledMemberDetected: one member of an office of 50
// (OUTPOST_BENCH_OFFICE_SIZE) is killed; how long until each other member
// no longer lists it. Run with: make
// bench, or go test -run '^$' -bench KilledMember -benchtime 1x ./pkg/gossip/
func BenchmarkKilledMemberDetected(b *testing.B) {
	size := 50
	if n, err := strconv.Atoi(os.Getenv("OUTPOST_BENCH_OFFICE_SIZE")); err == nil && n > 2 && n < 250 {
		size = n
	}
	b.Run(fmt.Sprintf("office=%d", size), func(b *testing.B) { benchKilled(b, size) })
}

func benchKilled(b *testing.B, size int) {
	o := startOffice(b, size-1, fmt.Sprintf("127.0.%d", 10+size/50))
	var p50, worst float64
	for i := 0; i < b.N; i++ {
		victim := fmt.Sprintf("127.0.7.%d", (size+i)%250+1)
		cmd := startChild(b, o, []string{victim})
		o.waitAll(b, size-1, 3*time.Minute)
		start := time.Now()
		cmd.Process.Kill()
		took := make([]time.Duration, len(o.nodes))
		left := len(o.nodes)
		for left > 0 {
			for j, n := range o.nodes {
				if took[j] == 0 && len(n.Peers()) == size-2 {
					took[j] = time.Since(start)
					left--
				}
			}
			if time.Since(start) > time.Minute {
				b.Fatalf("the killed member was still listed by %d members after a minute", left)
			}
			time.Sleep(10 * time.Millisecond)
		}
		cmd.Wait()
		sort.Slice(took, func(a, b int) bool { return took[a] < took[b] })
		p50 += pct(took, 50).Seconds()
		worst = max(worst, took[len(took)-1].Seconds())
		o.waitAll(b, size-2, time.Minute)
	}
	b.ReportMetric(p50/float64(b.N), "detect-p50-s")
	b.ReportMetric(worst, "detect-max-s")
}

// BenchmarkStarvedMembers: 5 members of an office of 50 get no CPU for
// stopFor (SIGSTOP), then run again; how many healthy members did anyone
// take for dead (the figure that must be 0), and how many of the starved.
func BenchmarkStarvedMembers(b *testing.B) {
	const size, starved = 50, 5
	const stopFor = 5 * time.Second
	o := startOffice(b, size-starved, "127.0.8")
	var healthyDead, starvedDead int
	for i := 0; i < b.N; i++ {
		var ips []string
		for k := range starved {
			ips = append(ips, fmt.Sprintf("127.0.9.%d", i*starved+k+1))
		}
		cmd := startChild(b, o, ips)
		o.waitAll(b, size-1, 3*time.Minute)
		healthy := map[string]bool{}
		for _, n := range o.nodes {
			healthy[n.cfg.Name] = true
		}
		// Watch every healthy member's view until things settle again.
		gone := map[string]bool{}
		watch := func(d time.Duration) {
			end := time.Now().Add(d)
			for time.Now().Before(end) {
				for _, n := range o.nodes {
					seen := map[string]bool{n.cfg.Name: true}
					for _, p := range n.Peers() {
						seen[p.Name] = true
					}
					for name := range healthy {
						if !seen[name] {
							gone[name] = true
						}
					}
					for _, ip := range ips {
						if !seen["child-"+ip] {
							gone["child-"+ip] = true
						}
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		cmd.Process.Signal(syscall.SIGSTOP)
		watch(stopFor)
		cmd.Process.Signal(syscall.SIGCONT)
		watch(20 * time.Second)
		for name := range gone {
			if healthy[name] {
				healthyDead++
			} else {
				starvedDead++
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
		o.waitAll(b, size-starved-1, 2*time.Minute)
	}
	b.ReportMetric(float64(healthyDead)/float64(b.N), "healthy-marked-dead")
	b.ReportMetric(float64(starvedDead)/float64(b.N), "starved-marked-dead")
}

// benchSuspicionMult is OUTPOST_BENCH_SUSPICION_MULT, to compare another
// suspicion multiplier with the agents' (0: the agents', 4: memberlist's).
func benchSuspicionMult() int {
	n, _ := strconv.Atoi(os.Getenv("OUTPOST_BENCH_SUSPICION_MULT"))
	return max(0, n)
}
