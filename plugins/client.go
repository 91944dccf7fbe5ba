package plugins

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/plugins/proto"
)

const (
	// StartTimeout bounds how long a plugin may take to start and answer
	// Describe, unless the context passed to Open ends sooner.
	StartTimeout = 30 * time.Second

	// DefaultCallTimeout bounds a call whose context has no deadline, so a
	// hung plugin cannot hold the agent forever.
	DefaultCallTimeout = 30 * time.Minute
)

var (
	// ErrExited is wrapped by the errors of calls made after the plugin
	// process exited, crashed or was killed. Reopen or Open it again.
	ErrExited = errors.New("plugin process has exited")

	// ErrClosed is returned by calls on a Client after Close.
	ErrClosed = errors.New("plugin client is closed")
)

// Client is the host side of one plugin binary running as a subprocess. A
// call that outlives its context, or a plugin that crashes, gets the process
// killed and an error saying so; the host carries on, and Reopen (or a new
// Open) starts a fresh process. A Client is safe for concurrent use.
type Client struct {
	path   string
	sum    []byte // SHA-256 of the binary when it was opened
	logger *slog.Logger

	mu     sync.Mutex
	kind   string // from Describe; the binary's name until then
	proc   *process
	closed bool
}

// process is one run of the plugin binary.
type process struct {
	pc   *plugin.Client
	cmd  *exec.Cmd
	rpc  proto.PluginClient
	once sync.Once
	dead chan struct{} // closed once killed by us
	// killed is set before the agent kills it, for its logger.
	killed *atomic.Bool
	log    *slog.Logger
}

// killWait bounds how long killing a plugin waits for it to be reaped.
const killWait = 5 * time.Second

// Open starts the plugin binary at path, checks that it speaks the contract
// and returns a client to it. The binary's SHA-256 is taken now and checked
// again at every start, so Reopen will not run a binary that was replaced
// since: Open the new one instead.
func Open(ctx context.Context, path string, logger *slog.Logger) (*Client, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open plugin %s: %w", path, err)
	}
	sum, err := fileSHA256(abs)
	if err != nil {
		return nil, fmt.Errorf("open plugin %s: %w", path, err)
	}
	name := filepath.Base(abs)
	c := &Client{
		path:   abs,
		sum:    sum,
		logger: logger.With("component", "plugin", "plugin", name),
		kind:   name,
	}
	p, kind, err := c.start(ctx)
	if err != nil {
		return nil, err
	}
	c.proc, c.kind = p, kind
	return c, nil
}

func fileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("hash %s: %w", path, err)
	}
	return h.Sum(nil), nil
}

// start runs the binary, dispenses the plugin and calls Describe.
func (c *Client) start(ctx context.Context) (*process, string, error) {
	timeout := StartTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if timeout <= 0 {
		return nil, "", fmt.Errorf("start plugin %s: %w", c.path, context.DeadlineExceeded)
	}
	killed := new(atomic.Bool)
	hcl := killAware{Logger: logging.HCLog(c.logger), killed: killed}
	exe, release, err := pinBinary(c.path, c.sum)
	if err != nil {
		return nil, "", fmt.Errorf("start plugin %s: %w", c.path, err)
	}
	defer release()
	cmd := exec.Command(exe)
	cmd.Args[0] = c.path
	isolate(cmd)
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          plugin.PluginSet{PluginName: &GRPCPlugin{}},
		Cmd:              cmd,
		SecureConfig:     &plugin.SecureConfig{Checksum: c.sum, Hash: sha256.New()},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     timeout,
		Logger:           hcl,
		SyncStdout:       hcl.StandardWriter(&hclog.StandardLoggerOptions{ForceLevel: hclog.Info}),
		SyncStderr:       hcl.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true}),
	})
	p := &process{pc: pc, cmd: cmd, dead: make(chan struct{}), killed: killed, log: c.logger}
	var rpcClient plugin.ClientProtocol
	err = startPinned(func() (err error) {
		rpcClient, err = pc.Client()
		return err
	}, p.exited)
	if err != nil {
		p.kill()
		return nil, "", fmt.Errorf("start plugin %s: %w", c.path, err)
	}
	raw, err := rpcClient.Dispense(PluginName)
	if err != nil {
		p.kill()
		return nil, "", fmt.Errorf("start plugin %s: %w", c.path, err)
	}
	rpc, ok := raw.(proto.PluginClient)
	if !ok {
		p.kill()
		return nil, "", fmt.Errorf("start plugin %s: dispensed %T, not a plugin client", c.path, raw)
	}
	p.rpc = rpc

	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := rpc.Describe(dctx, &proto.DescribeRequest{})
	if err != nil {
		p.kill()
		return nil, "", fmt.Errorf("start plugin %s: describe: %w", c.path, err)
	}
	if resp.GetKind() == "" {
		p.kill()
		return nil, "", fmt.Errorf("start plugin %s: describe names no kind", c.path)
	}
	c.logger.Info("plugin started", "kind", resp.GetKind(), "version", resp.GetVersion(), "pid", cmd.Process.Pid)
	return p, resp.GetKind(), nil
}

// kill ends the process at once: a plugin that missed its deadline gets no
// grace period, since whatever it was doing it does under a journal.
func (p *process) kill() {
	p.once.Do(func() {
		p.killed.Store(true)
		// Once go-plugin has reaped the process its group id may be reused:
		// leave it alone then (its pipes are closed, so nothing of it is left
		// holding the host).
		if p.cmd.Process != nil && !p.pc.Exited() {
			killTree(p.cmd.Process)
		}
		// go-plugin reaps the process only once its stdout and stderr are
		// closed: something it started outside its group (a daemon in a
		// session of its own) may hold them for ever. The call waits no
		// longer than killWait for that; the reaping goes on behind.
		reaped := make(chan struct{})
		go func() {
			defer close(reaped)
			p.pc.Kill() // reaps the process and its log goroutines
		}()
		select {
		case <-reaped:
		case <-time.After(killWait):
			p.log.Warn("plugin killed, but something it started still holds its output open: it is reaped once that ends")
		}
		close(p.dead)
	})
}

func (p *process) exited() bool {
	select {
	case <-p.dead:
		return true
	default:
		return p.pc.Exited()
	}
}

// Kind is the item kind the plugin said it manages, e.g. "package".
func (c *Client) Kind() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kind
}

// Exited reports whether the plugin process is gone (crashed, killed after a
// deadline, or closed), so that the caller knows to Reopen it.
func (c *Client) Exited() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed || c.proc == nil || c.proc.exited()
}

// Reopen kills the current process, if any, and starts a fresh one from the
// same binary. The binary must still have the SHA-256 it had at Open.
func (c *Client) Reopen(ctx context.Context) error {
	c.mu.Lock()
	old := c.proc
	c.proc = nil
	c.mu.Unlock()
	if old != nil {
		old.kill()
	}
	p, kind, err := c.start(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc != nil { // a concurrent Reopen won; keep one process
		p.kill()
		return nil
	}
	c.proc, c.kind, c.closed = p, kind, false
	return nil
}

// Close stops the plugin process. Calls after Close return ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	p := c.proc
	c.proc, c.closed = nil, true
	c.mu.Unlock()
	if p != nil {
		p.kill()
	}
	return nil
}

// Describe asks the plugin what it is.
func (c *Client) Describe(ctx context.Context) (*proto.DescribeResponse, error) {
	return call(ctx, c, "describe", func(ctx context.Context, rpc proto.PluginClient) (*proto.DescribeResponse, error) {
		return rpc.Describe(ctx, &proto.DescribeRequest{})
	})
}

// Scan asks the plugin for the current state of items under req.Root.
func (c *Client) Scan(ctx context.Context, req *proto.ScanRequest) (*proto.ScanResponse, error) {
	what := fmt.Sprintf("scan %d items", len(req.GetItems()))
	return call(ctx, c, what, func(ctx context.Context, rpc proto.PluginClient) (*proto.ScanResponse, error) {
		return rpc.Scan(ctx, req)
	})
}

// Apply asks the plugin to bring one item to its desired state.
func (c *Client) Apply(ctx context.Context, req *proto.ApplyRequest) (*proto.ApplyResponse, error) {
	what := "apply " + req.GetItem().GetId()
	return call(ctx, c, what, func(ctx context.Context, rpc proto.PluginClient) (*proto.ApplyResponse, error) {
		return rpc.Apply(ctx, req)
	})
}

// call runs one RPC and turns what can go wrong into an error that names
// the plugin and the call, killing the process when it missed its deadline,
// was abandoned or died.
func call[T any](ctx context.Context, c *Client, what string, rpcCall func(context.Context, proto.PluginClient) (T, error)) (T, error) {
	var zero T
	c.mu.Lock()
	p, kind, closed := c.proc, c.kind, c.closed
	c.mu.Unlock()
	switch {
	case closed:
		return zero, fmt.Errorf("plugin %s: %s: %w", kind, what, ErrClosed)
	case p == nil || p.exited():
		return zero, fmt.Errorf("plugin %s: %s: %w; reopen it", kind, what, ErrExited)
	}

	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
		defer cancel()
	}
	start := time.Now()
	dl, _ := ctx.Deadline()
	resp, err := rpcCall(ctx, p.rpc)
	if err == nil {
		return resp, nil
	}

	code := status.Code(err)
	switch {
	// Only our own deadline counts: a plugin may report that something of
	// its own timed out, and that is an answer, not a hang.
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || (code == codes.DeadlineExceeded && !time.Now().Before(dl)):
		p.kill()
		c.logger.Error("plugin call timed out; plugin killed", "call", what, "after", time.Since(start))
		return zero, fmt.Errorf("plugin %s: %s: timed out after %s, plugin killed: %w",
			kind, what, roundDuration(dl.Sub(start)), context.DeadlineExceeded)
	case ctx.Err() != nil || code == codes.Canceled:
		// The plugin may be half way through a change nobody waits for;
		// ending it is the only way to be sure it stops.
		p.kill()
		return zero, fmt.Errorf("plugin %s: %s: canceled, plugin killed: %w", kind, what, context.Canceled)
	case code == codes.Unavailable || p.pc.Exited():
		p.kill()
		c.logger.Error("plugin process died during a call", "call", what, "error", err)
		return zero, fmt.Errorf("plugin %s: %s: plugin crashed (%s): %w", kind, what, status.Convert(err).Message(), ErrExited)
	}
	if code == codes.FailedPrecondition {
		return zero, fmt.Errorf("plugin %s: %s: %w", kind, what, Refusal(status.Convert(err).Message()))
	}
	return zero, fmt.Errorf("plugin %s: %s: %s", kind, what, status.Convert(err).Message())
}

// roundDuration makes timeouts read as people set them: 30s, 250ms.
func roundDuration(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// killAware is the plugin client's logger. go-plugin logs the end of a
// plugin process as an error whenever it exits with a signal; when the
// agent killed it (a stop, a missed deadline) that is expected, and said
// at debug level.
type killAware struct {
	hclog.Logger
	killed *atomic.Bool
}

func (k killAware) Error(msg string, args ...any) {
	if msg == "plugin process exited" && k.killed.Load() {
		k.Logger.Debug(msg, args...)
		return
	}
	k.Logger.Error(msg, args...)
}
