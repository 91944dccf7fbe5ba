package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// TwoHosts emulates two computers on this one, for warm hits: a server and
// a client network namespace joined by a veth pair, each side's processes
// pinned to a CPU of its own, and the packets each side receives processed
// on its own CPU (RPS on its end of the pair).
//
// On loopback a sender's system call also runs the receiver's TCP receive
// processing, and the kernel charges it to the sender's process; how much
// of that lands on the server depends on its socket buffers more than on
// its code. Here a CPU's busy time is what one computer spends, whichever
// process the kernel charges, and the server and its clients no longer
// compete for the same two cores.
type TwoHosts struct {
	Server, Client       string // namespace names
	ServerIP, ClientIP   string
	ServerCPU, ClientCPU int
	link                 string // the server's end of the veth pair
	close                sync.Once
}

// twoHostsNet is the /30 of the veth pair. The namespaces and veth ends
// are named per process, so that a run left behind by a killed benchmark
// does not stop the next (removeStale clears it).
const twoHostsNet = "10.201.0."

// The namespaces' names: these, then the benchmark's process id.
const (
	serverNS = "obench-srv-"
	clientNS = "obench-cli-"
)

// NewTwoHosts sets the two computers up. It needs root, ip(8) and
// taskset(1), and two CPUs; the error says which is missing.
func NewTwoHosts() (*TwoHosts, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root, for network namespaces")
	}
	if runtime.NumCPU() < 2 {
		return nil, errors.New("needs two CPUs, one per computer")
	}
	for _, tool := range []string{"ip", "taskset"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("needs %s: %w", tool, err)
		}
	}
	removeStale()
	id := os.Getpid()
	h := &TwoHosts{
		Server: serverNS + strconv.Itoa(id), Client: clientNS + strconv.Itoa(id),
		ServerIP: twoHostsNet + "1", ClientIP: twoHostsNet + "2",
		ServerCPU: 0, ClientCPU: 1,
	}
	vs, vc := fmt.Sprintf("obs%d", id), fmt.Sprintf("obc%d", id)
	h.link = vs
	steps := [][]string{
		{"netns", "add", h.Server},
		{"netns", "add", h.Client},
		{"link", "add", vs, "type", "veth", "peer", "name", vc},
		{"link", "set", vs, "netns", h.Server},
		{"link", "set", vc, "netns", h.Client},
		{"-n", h.Server, "addr", "add", h.ServerIP + "/30", "dev", vs},
		{"-n", h.Client, "addr", "add", h.ClientIP + "/30", "dev", vc},
		{"-n", h.Server, "link", "set", "lo", "up"},
		{"-n", h.Client, "link", "set", "lo", "up"},
		{"-n", h.Server, "link", "set", vs, "up"},
		{"-n", h.Client, "link", "set", vc, "up"},
		// Each end's received packets are processed on its own computer's
		// CPU, not on the sender's.
		{"netns", "exec", h.Server, "sh", "-c", fmt.Sprintf("echo %x > /sys/class/net/%s/queues/rx-0/rps_cpus", 1<<h.ServerCPU, vs)},
		{"netns", "exec", h.Client, "sh", "-c", fmt.Sprintf("echo %x > /sys/class/net/%s/queues/rx-0/rps_cpus", 1<<h.ClientCPU, vc)},
	}
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			h.Close()
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return h, nil
}

// removeStale removes the namespaces of benchmarks that were killed
// before they could (their process is gone).
func removeStale() {
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		name := e.Name()
		rest, ok := strings.CutPrefix(name, serverNS)
		if !ok {
			rest, ok = strings.CutPrefix(name, clientNS)
		}
		pid, err := strconv.Atoi(rest)
		if !ok || err != nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
			exec.Command("ip", "netns", "del", name).Run()
		}
	}
}

// Close removes the namespaces (and with them the veth pair).
func (h *TwoHosts) Close() {
	h.close.Do(func() {
		exec.Command("ip", "netns", "del", h.Server).Run()
		exec.Command("ip", "netns", "del", h.Client).Run()
		// Gone with its namespace, unless setting up stopped before the
		// pair was moved there.
		exec.Command("ip", "link", "del", h.link).Run()
	})
}

// Command is name run in namespace ns, pinned to cpu. ip and taskset exec
// what they run, so the process's pid is the program's.
func (h *TwoHosts) Command(ns string, cpu int, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, "taskset", "-c", strconv.Itoa(cpu), name}, args...)...)
}

// inNamespace runs f on an OS thread of its own that has joined namespace
// ns. The thread ends with f: it is never handed back to the Go scheduler
// in the wrong namespace. A socket keeps the namespace it was made in.
func inNamespace(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread exits with the goroutine
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("namespace %s: %w", ns, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("join namespace %s: %w", ns, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// Dialer dials from namespace ns, for the benchmark's own requests (the
// timed clients run as a process in the client namespace).
func (h *TwoHosts) Dialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = inNamespace(ns, func() error {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// Forward listens on the server namespace's loopback and forwards each
// connection to target in this process's namespace: how the caches in the
// server namespace reach the WAN proxy, and through it the file server.
func (h *TwoHosts) Forward(target string) (addr string, stop func(), err error) {
	var ln net.Listener
	if err := inNamespace(h.Server, func() (err error) {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		return "", nil, err
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				pipe(c, target)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			})
		}
	})
	// Stopping ends the connections too: a cache keeps idle ones open.
	return ln.Addr().String(), func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}, nil
}

// pipe copies between c and a new connection to target until either
// direction ends, then closes both (HTTP needs no half-closed connection).
func pipe(c net.Conn, target string) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", target, 10*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	<-done
}

// CPUBusy is each CPU's busy time so far (user, nice, system, irq and
// softirq; not idle, iowait or time stolen by the hypervisor), from
// /proc/stat, in its ticks of 10 ms.
func CPUBusy() ([]time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, err
	}
	var out []time.Duration
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || f[0] == "cpu" || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		var ticks int64
		for _, i := range []int{1, 2, 3, 6, 7} {
			n, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("/proc/stat: %s: %w", f[0], err)
			}
			ticks += n
		}
		out = append(out, time.Duration(ticks)*10*time.Millisecond)
	}
	return out, nil
}

// HerdChildEnv, when set in a benchmark binary's environment, makes it run
// one timed herd instead of tests (see RunHerdChild): the clients' side of
// a warm run between two hosts, as a process in the client namespace.
const HerdChildEnv = "OUTPOST_BENCH_HERD_CHILD"

// HerdSpec is what a herd child is asked to do.
type HerdSpec struct {
	URL       string
	Clients   int
	Reps      int
	Want      int64 // bytes per download
	ServerPID int   // whose CPU time to take around the herd
}

// HerdReport is what a herd child measured, all of it taken right around
// the herd, so that the child's own start is not in it.
type HerdReport struct {
	Bytes    int64
	Wall     time.Duration
	Clients  time.Duration // this process's CPU time
	Server   time.Duration // the server's processes' CPU time
	Busy     []time.Duration
	CPUs     []int // the CPUs it was allowed to run on
	Errors   int
	FirstErr string
}

// RunHerdChild runs the herd spec (JSON) describes and prints a HerdReport
// as JSON.
func RunHerdChild(spec string) error {
	var s HerdSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		return fmt.Errorf("%s: %w", HerdChildEnv, err)
	}
	self := os.Getpid()
	srv0, err := CPUTime(s.ServerPID)
	if err != nil {
		return err
	}
	cli0, _ := processCPU(self)
	busy0, err := CPUBusy()
	if err != nil {
		return err
	}
	t0 := time.Now()
	sum := Summarize(Herd(context.Background(), s.Clients, s.Reps, s.URL, s.Want))
	r := HerdReport{Wall: time.Since(t0), Bytes: sum.Bytes, Errors: sum.Errors}
	busy1, _ := CPUBusy()
	cli1, _ := processCPU(self)
	srv1, _ := CPUTime(s.ServerPID)
	r.Clients, r.Server = cli1-cli0, srv1-srv0
	for i := range min(len(busy0), len(busy1)) {
		r.Busy = append(r.Busy, busy1[i]-busy0[i])
	}
	if sum.FirstErr != nil {
		r.FirstErr = sum.FirstErr.Error()
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err == nil {
		for c := range len(set) * 64 { // not NumCPU: that counts this set
			if set.IsSet(c) {
				r.CPUs = append(r.CPUs, c)
			}
		}
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// RunHerd runs one herd from the client namespace, on the client's CPU,
// as a child process of bin (a benchmark binary whose TestMain calls
// RunHerdChild).
func (h *TwoHosts) RunHerd(bin string, s HerdSpec) (HerdReport, error) {
	var r HerdReport
	spec, _ := json.Marshal(s)
	cmd := h.Command(h.Client, h.ClientCPU, bin)
	cmd.Env = append(os.Environ(), HerdChildEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return r, fmt.Errorf("herd in %s: %w", h.Client, err)
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("herd in %s: %w: %q", h.Client, err, out)
	}
	return r, nil
}
