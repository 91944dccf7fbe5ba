package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// WANChildEnv, when set in a benchmark binary's environment, makes it serve
// a WAN instead of running tests: "target rate" (host:port, bytes/s). See
// ServeWANChild.
const WANChildEnv = "OUTPOST_BENCH_WAN_CHILD"

// WANProcess is a WAN run by a child process: the same proxy, but its
// goroutine does not queue for the benchmark process's two Ps behind the
// herd's clients, which on a busy machine held it back for tens of
// milliseconds. A real uplink does not share the clients' CPU at all; here
// it still shares the machine's.
type WANProcess struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	addr string
	mu   sync.Mutex
}

// StartWANProcess runs bin (a test binary whose TestMain calls
// ServeWANChild) as a WAN to target capped at bytesPerSec.
func StartWANProcess(bin, target string, bytesPerSec float64) (*WANProcess, error) {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %.0f", WANChildEnv, target, bytesPerSec))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("wan process: %w", err)
	}
	p := &WANProcess{cmd: cmd, in: in, out: bufio.NewReader(out)}
	line, err := p.out.ReadString('\n')
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("wan process: no address: %w", err)
	}
	p.addr = strings.TrimSpace(line)
	return p, nil
}

func (p *WANProcess) call(cmd string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := fmt.Fprintln(p.in, cmd); err != nil {
		return ""
	}
	line, _ := p.out.ReadString('\n')
	return strings.TrimSpace(line)
}

// Addr is where the cache under test should find the file server.
func (p *WANProcess) Addr() string { return p.addr }

// Down is the number of bytes that have crossed the WAN toward the office.
func (p *WANProcess) Down() int64 {
	f := strings.Fields(p.call("stat"))
	if len(f) != 2 {
		return -1
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return n
}

// LastDown is when the last byte toward the office went out.
func (p *WANProcess) LastDown() time.Time {
	f := strings.Fields(p.call("stat"))
	if len(f) != 2 {
		return time.Time{}
	}
	ns, _ := strconv.ParseInt(f[1], 10, 64)
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Reset empties the bucket (see WAN.Reset).
func (p *WANProcess) Reset() { p.call("reset") }

// Close stops the child.
func (p *WANProcess) Close() {
	p.in.Close()
	p.cmd.Wait()
}

// ServeWANChild serves a WAN as WANChildEnv describes, answering on stdout
// to commands on stdin ("stat": bytes down and the last one's Unix
// nanoseconds; "reset"), until stdin closes.
func ServeWANChild(spec string) error {
	var target string
	var rate float64
	if _, err := fmt.Sscanf(spec, "%s %f", &target, &rate); err != nil {
		return fmt.Errorf("%s=%q: want \"host:port bytes/s\": %w", WANChildEnv, spec, err)
	}
	w, err := StartWAN(target, rate)
	if err != nil {
		return err
	}
	defer w.Close()
	fmt.Println(w.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "stat":
			fmt.Println(w.Down(), w.last.Load())
		case "reset":
			w.Reset()
			fmt.Println("ok")
		default:
			fmt.Println("?")
		}
	}
	if err := in.Err(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
