package plugins_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/plugins"
	"github.com/outposthq/outpost/plugins/plugintest"
	"github.com/outposthq/outpost/plugins/proto"
)

// records is a slog handler that keeps every record, for tests that look
// at what reached the host's logger.
type records struct {
	attrs []slog.Attr
	mu    *sync.Mutex
	recs  *[]slog.Record
}

func newRecords() *records { return &records{mu: new(sync.Mutex), recs: new([]slog.Record)} }

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	rec = rec.Clone()
	rec.AddAttrs(r.attrs...)
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.recs = append(*r.recs, rec)
	return nil
}
func (r *records) WithAttrs(as []slog.Attr) slog.Handler {
	c := *r
	c.attrs = append(append([]slog.Attr(nil), r.attrs...), as...)
	return &c
}
func (r *records) WithGroup(string) slog.Handler { return r }

// find returns the first record with msg, if any.
func (r *records) find(msg string) (slog.Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range *r.recs {
		if rec.Message == msg {
			return rec, true
		}
	}
	return slog.Record{}, false
}

func apply(id string) *proto.ApplyRequest {
	return &proto.ApplyRequest{Root: "/nonexistent", Item: &wire.Item{Id: id, Kind: "test", State: wire.State_STATE_PRESENT}}
}

func open(t *testing.T, bin string, logger *slog.Logger) *plugins.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := plugins.Open(ctx, bin, logger)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestClient(t *testing.T) {
	bin := plugintest.Build(t, "github.com/outposthq/outpost/plugins/internal/testplugin")

	t.Run("describe and scan", func(t *testing.T) {
		c := open(t, bin, logging.Discard())
		if c.Kind() != "test" {
			t.Errorf("Kind = %q, want test", c.Kind())
		}
		d, err := c.Describe(context.Background())
		if err != nil || d.GetVersion() != "0.0.1" {
			t.Fatalf("Describe = %v, %v; want version 0.0.1", d, err)
		}
		s, err := c.Scan(context.Background(), &proto.ScanRequest{Items: []*wire.Item{{Id: "a"}, {Id: "b"}}})
		if err != nil || len(s.GetItems()) != 2 || s.GetItems()[1].GetId() != "b" {
			t.Fatalf("Scan = %v, %v; want items a, b", s, err)
		}
	})

	t.Run("concurrent calls", func(t *testing.T) {
		c := open(t, bin, logging.Discard())
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, err := c.Apply(ctx, apply("item-"+string(rune('a'+i)))); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("plugin error keeps the plugin", func(t *testing.T) {
		c := open(t, bin, logging.Discard())
		_, err := c.Apply(context.Background(), apply("fail"))
		if err == nil || !strings.Contains(err.Error(), "plugin test: apply fail: item fail is refused on purpose") {
			t.Fatalf("Apply(fail) error = %v, want the plugin's reason", err)
		}
		if c.Exited() {
			t.Fatal("plugin exited after returning an error")
		}
		if _, err := c.Apply(context.Background(), apply("ok")); err != nil {
			t.Fatalf("Apply after a failure: %v", err)
		}
	})

	t.Run("hung call is killed at the deadline", func(t *testing.T) {
		c := open(t, bin, logging.Discard())
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Apply(ctx, apply("hang"))
		if err == nil || !strings.Contains(err.Error(), "plugin test: apply hang: timed out after 300ms, plugin killed") {
			t.Fatalf("Apply(hang) error = %v, want a timeout that killed the plugin", err)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Apply(hang) took %v, want about 300ms", d)
		}
		if !c.Exited() {
			t.Fatal("Exited = false after the plugin was killed")
		}
		if _, err := c.Describe(context.Background()); !errors.Is(err, plugins.ErrExited) {
			t.Fatalf("Describe on a killed plugin = %v, want ErrExited", err)
		}
		reopen(t, c)
	})

	t.Run("abandoned call is killed", func(t *testing.T) {
		c := open(t, bin, logging.Discard())
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		_, err := c.Apply(ctx, apply("hang"))
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "canceled, plugin killed") {
			t.Fatalf("Apply(hang) canceled = %v, want canceled, plugin killed", err)
		}
		if !c.Exited() {
			t.Fatal("Exited = false after the plugin was killed")
		}
		reopen(t, c)
	})

	t.Run("crash is reported and survivable", func(t *testing.T) {
		c := open(t, bin, logging.Discard())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := c.Apply(ctx, apply("crash"))
		if !errors.Is(err, plugins.ErrExited) || !strings.Contains(err.Error(), "plugin test: apply crash: plugin crashed") {
			t.Fatalf("Apply(crash) = %v, want plugin crashed wrapping ErrExited", err)
		}
		if !c.Exited() {
			t.Fatal("Exited = false after a crash")
		}
		reopen(t, c)
	})

	t.Run("plugin logs reach the host logger", func(t *testing.T) {
		recs := newRecords()
		c := open(t, bin, slog.New(recs))
		if _, err := c.Apply(context.Background(), apply("log")); err != nil {
			t.Fatal(err)
		}
		var rec slog.Record
		testutil.Eventually(t, 5*time.Second, func() bool {
			var ok bool
			rec, ok = recs.find("hello from the plugin")
			return ok
		}, "the plugin's log record never reached the host")
		if rec.Level != slog.LevelWarn {
			t.Errorf("level %v, want WARN", rec.Level)
		}
		attrs := map[string]string{}
		rec.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
		if attrs["item"] != "log" || attrs["component"] != "plugin" {
			t.Errorf("attrs %v, want item=log component=plugin", attrs)
		}
	})

	t.Run("a plugin the agent stops is not an error", func(t *testing.T) {
		recs := newRecords()
		c := open(t, bin, slog.New(recs))
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // go-plugin logs the exit from its own goroutine
		recs.mu.Lock()
		defer recs.mu.Unlock()
		for _, r := range *recs.recs {
			if r.Level >= slog.LevelError {
				t.Errorf("stopping a plugin logged %v %q", r.Level, r.Message)
			}
		}
	})

	t.Run("closed client", func(t *testing.T) {
		c := open(t, bin, logging.Discard())
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Describe(context.Background()); !errors.Is(err, plugins.ErrClosed) {
			t.Fatalf("Describe after Close = %v, want ErrClosed", err)
		}
		if !c.Exited() {
			t.Fatal("Exited = false after Close")
		}
	})

	t.Run("reopen refuses a replaced binary", func(t *testing.T) {
		copyBin := filepath.Join(t.TempDir(), "copy")
		b, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(copyBin, b, 0o755); err != nil {
			t.Fatal(err)
		}
		c := open(t, copyBin, logging.Discard())
		if err := os.WriteFile(copyBin+".new", []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(copyBin+".new", copyBin); err != nil {
			t.Fatal(err)
		}
		err = c.Reopen(context.Background())
		if err == nil || !strings.Contains(err.Error(), "checksum") {
			t.Fatalf("Reopen of a replaced binary = %v, want a checksum error", err)
		}
	})
}

func reopen(t *testing.T, c *plugins.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Reopen(ctx); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	if c.Exited() {
		t.Fatal("Exited = true after Reopen")
	}
	if _, err := c.Apply(ctx, apply("ok")); err != nil {
		t.Fatalf("Apply after Reopen: %v", err)
	}
}

func TestOpenRefusesNonPlugins(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses a shell script")
	}
	dir := t.TempDir()
	tests := []struct {
		name   string
		script string
		want   string
	}{
		{"hangs without a handshake", "#!/bin/sh\nsleep 60\n", "timeout while waiting for plugin to start"},
		{"exits at once", "#!/bin/sh\necho not a plugin >&2\nexit 1\n", "start plugin"},
		{"missing", "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if tt.script != "" {
				if err := os.WriteFile(path, []byte(tt.script), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			start := time.Now()
			c, err := plugins.Open(ctx, path, logging.Discard())
			if err == nil {
				c.Close()
				t.Fatal("Open succeeded on something that is not a plugin")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open error = %v, want it to mention %q", err, tt.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("Open took %v to give up, want about 1s", d)
			}
		})
	}
}
