package bench

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/outposthq/outpost/pkg/testutil"
)

// herdChild runs a herd child's work if this process is one (see
// RunHerdChild), and says whether it was.
func herdChild() (bool, error) {
	spec := os.Getenv(HerdChildEnv)
	if spec == "" {
		return false, nil
	}
	return true, RunHerdChild(spec)
}

// warmBetweenHosts runs the warm hits with the caches on one emulated
// computer and the clients on another (TwoHosts): the relay as configured
// by default, its variants, nginx proxy_cache+lock and its variants. When
// the machine cannot host them it says why instead.
func warmBetweenHosts(b *testing.B, bin, nginx string, m *testutil.MinIO, cl *minio.Client, wanAddr string,
	relays, nginxes []string, size int, total int64, runs int) ([]warmResult, string) {
	h, err := NewTwoHosts()
	if err != nil {
		return nil, "not run: " + err.Error()
	}
	b.Cleanup(h.Close)
	// The caches reach the file server through the same WAN, from the
	// server namespace's loopback.
	upstream, stop, err := h.Forward(wanAddr)
	if err != nil {
		return nil, "not run: " + err.Error()
	}
	b.Cleanup(stop)
	at := &placement{
		host: h.ServerIP,
		command: func(name string, args ...string) *exec.Cmd {
			return h.Command(h.Server, h.ServerCPU, name, args...)
		},
		client: &http.Client{Transport: &http.Transport{DialContext: h.Dialer(h.Client)}},
		suffix: ", two hosts",
	}
	starts := append([]func() *system{
		func() *system { return startRelay(b, at, bin, m, upstream, "") },
		func() *system { return startNginx(b, at, nginx, upstream, false, "") },
	}, warmVariants(b, at, bin, nginx, m, upstream, relays, nginxes)...)
	var systems []*system
	var hashes []string
	for i, start := range starts {
		sys := start()
		b.Cleanup(sys.stop)
		systems = append(systems, sys)
		hashes = append(hashes, warmUp(b, at, sys, cl, 400+i, size))
	}
	var runErr error
	run := func(sys *system, url string, n, reps int, want int64) warmRun {
		r, err := h.RunHerd(os.Args[0], HerdSpec{URL: url, Clients: n, Reps: reps, Want: want, ServerPID: sys.pid})
		if err != nil {
			runErr = errors.Join(runErr, err)
			return warmRun{errors: n * reps, err: err}
		}
		w := warmRun{bytes: r.Bytes, wall: r.Wall, server: r.Server, clients: r.Clients, errors: r.Errors}
		if r.FirstErr != "" {
			w.err = errors.New(r.FirstErr)
		}
		if len(r.Busy) > max(h.ServerCPU, h.ClientCPU) {
			w.serverHost, w.clientHost = r.Busy[h.ServerCPU], r.Busy[h.ClientCPU]
		}
		return w
	}
	warms := warmRuns(systems, hashes, size, total, runs, run)
	for _, sys := range systems {
		sys.stop()
	}
	if runErr != nil {
		return warms, "errors: " + runErr.Error()
	}
	return warms, ""
}

// Two hosts are two namespaces: a server listening in one is reached from
// the other, not from here, the WAN forward carries bytes from the server
// side to here, and a herd child in the client namespace fetches and
// reports what it measured; a killed run's namespaces are cleared. Skipped
// where namespaces cannot be made.
func TestTwoHosts(t *testing.T) {
	// What a killed benchmark left behind: a namespace named for a process
	// that is gone. Setting up removes it.
	stale := ""
	if os.Geteuid() == 0 {
		gone := exec.Command("true")
		if err := gone.Run(); err == nil {
			stale = clientNS + strconv.Itoa(gone.Process.Pid)
			if exec.Command("ip", "netns", "add", stale).Run() != nil {
				stale = ""
			}
		}
	}
	h, err := NewTwoHosts()
	if err != nil {
		if stale != "" {
			exec.Command("ip", "netns", "del", stale).Run()
		}
		t.Skip("two hosts:", err)
	}
	defer h.Close()
	if _, err := os.Stat("/run/netns/" + stale); stale != "" && err == nil {
		exec.Command("ip", "netns", "del", stale).Run()
		t.Errorf("the stale namespace %s was left", stale)
	}

	body := bytes.Repeat([]byte("two hosts "), 100_000)
	var ln net.Listener
	if err := inNamespace(h.Server, func() (err error) {
		ln, err = net.Listen("tcp", h.ServerIP+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/"

	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("the server namespace was reached from the benchmark's own")
	}
	cl := &http.Client{Transport: &http.Transport{DialContext: h.Dialer(h.Client)}}
	if d := get(context.Background(), cl, url, time.Now(), int64(len(body))); d.Err != nil {
		t.Fatalf("from the client namespace: %v", d.Err)
	}

	// The forward: from the server namespace's loopback to a listener here.
	here := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "upstream") }))
	defer here.Close()
	fwd, stop, err := h.Forward(strings.TrimPrefix(here.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	up := &http.Client{Transport: &http.Transport{DialContext: h.Dialer(h.Server), DisableKeepAlives: true}}
	if d := get(context.Background(), up, "http://"+fwd+"/", time.Now(), int64(len("upstream"))); d.Err != nil {
		t.Fatalf("through the forward: %v", d.Err)
	}

	r, err := h.RunHerd(os.Args[0], HerdSpec{URL: url, Clients: 3, Reps: 2, Want: int64(len(body)), ServerPID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 0 || r.Bytes != 6*int64(len(body)) || r.Wall <= 0 || len(r.Busy) < 2 {
		t.Errorf("herd report %+v, want 6 bodies, no errors, a wall time and every CPU's busy time", r)
	}
	if !slices.Equal(r.CPUs, []int{h.ClientCPU}) {
		t.Errorf("the herd ran on CPUs %v, want only the client's %d", r.CPUs, h.ClientCPU)
	}
	if r.Server <= 0 {
		t.Errorf("herd report: server CPU %v, want this process's time serving", r.Server)
	}
}
