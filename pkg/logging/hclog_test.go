package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// recorder is a slog handler that keeps what it is given.
type recorder struct {
	level slog.Level
	attrs []slog.Attr

	mu      *sync.Mutex
	records *[]record
}

type record struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func newRecorder(level slog.Level) *recorder {
	return &recorder{level: level, mu: new(sync.Mutex), records: new([]record)}
}

func (r *recorder) Enabled(_ context.Context, lv slog.Level) bool { return lv >= r.level }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	attrs := map[string]string{}
	for _, a := range r.attrs {
		attrs[a.Key] = a.Value.String()
	}
	rec.Attrs(func(a slog.Attr) bool {
		attrs[a.Key] = a.Value.String()
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.records = append(*r.records, record{level: rec.Level, msg: rec.Message, attrs: attrs})
	return nil
}

func (r *recorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *r
	c.attrs = append(append([]slog.Attr(nil), r.attrs...), attrs...)
	return &c
}

func (r *recorder) WithGroup(string) slog.Handler { return r }

func (r *recorder) all() []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]record(nil), *r.records...)
}

func TestHCLogLevels(t *testing.T) {
	tests := []struct {
		name    string
		handler slog.Level
		log     func(hclog.Logger)
		want    []slog.Level
	}{
		{"trace dropped at debug", slog.LevelDebug, func(l hclog.Logger) { l.Trace("x") }, nil},
		{"trace kept at trace", LevelTrace, func(l hclog.Logger) { l.Trace("x") }, []slog.Level{LevelTrace}},
		{"debug", slog.LevelDebug, func(l hclog.Logger) { l.Debug("x") }, []slog.Level{slog.LevelDebug}},
		{"info", slog.LevelInfo, func(l hclog.Logger) { l.Info("x") }, []slog.Level{slog.LevelInfo}},
		{"warn", slog.LevelInfo, func(l hclog.Logger) { l.Warn("x") }, []slog.Level{slog.LevelWarn}},
		{"error", slog.LevelError, func(l hclog.Logger) { l.Error("x") }, []slog.Level{slog.LevelError}},
		{"debug dropped at info", slog.LevelInfo, func(l hclog.Logger) { l.Debug("x") }, nil},
		{"off dropped", LevelTrace, func(l hclog.Logger) { l.Log(hclog.Off, "x") }, nil},
		{"no level is info", slog.LevelInfo, func(l hclog.Logger) { l.Log(hclog.NoLevel, "x") }, []slog.Level{slog.LevelInfo}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(tt.handler)
			tt.log(HCLog(slog.New(rec)))
			var got []slog.Level
			for _, r := range rec.all() {
				got = append(got, r.level)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("levels %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("levels %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestHCLogGetLevel(t *testing.T) {
	tests := []struct {
		handler slog.Level
		want    hclog.Level
	}{
		{LevelTrace, hclog.Trace},
		{slog.LevelDebug, hclog.Debug},
		{slog.LevelInfo, hclog.Info},
		{slog.LevelWarn, hclog.Warn},
		{slog.LevelError, hclog.Error},
		{slog.LevelError + 4, hclog.Off},
	}
	for _, tt := range tests {
		t.Run(tt.handler.String(), func(t *testing.T) {
			l := HCLog(slog.New(newRecorder(tt.handler)))
			if got := l.GetLevel(); got != tt.want {
				t.Fatalf("GetLevel = %v, want %v", got, tt.want)
			}
			if l.IsDebug() != (tt.want <= hclog.Debug) {
				t.Fatalf("IsDebug = %v at %v", l.IsDebug(), tt.want)
			}
		})
	}
}

func TestHCLogAttributes(t *testing.T) {
	rec := newRecorder(slog.LevelDebug)
	l := HCLog(slog.New(rec)).Named("plugin").Named("outpost-plugin-package").With("pid", 42)
	l.Info("started", "path", "/usr/lib/outpost", "count", hclog.Fmt("%d items", 3), "dangling")
	l.ResetNamed("other").Warn("w")

	got := rec.all()
	if len(got) != 2 {
		t.Fatalf("got %d records, want 2", len(got))
	}
	want := map[string]string{
		"logger":             "plugin.outpost-plugin-package",
		"pid":                "42",
		"path":               "/usr/lib/outpost",
		"count":              "3 items",
		"EXTRA_VALUE_AT_END": "dangling",
	}
	for k, v := range want {
		if got[0].attrs[k] != v {
			t.Errorf("attr %s = %q, want %q (all: %v)", k, got[0].attrs[k], v, got[0].attrs)
		}
	}
	if got[1].attrs["logger"] != "other" || got[1].attrs["pid"] != "42" {
		t.Errorf("ResetNamed record attrs %v, want logger=other pid=42", got[1].attrs)
	}
	if n := len(l.ImpliedArgs()); n != 2 {
		t.Errorf("ImpliedArgs has %d values, want 2", n)
	}
}

func TestHCLogStandardWriter(t *testing.T) {
	rec := newRecorder(slog.LevelDebug)
	l := HCLog(slog.New(rec))
	w := l.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})
	if _, err := w.Write([]byte("[WARN] disk low\n[DEBUG] par")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("tial\nplain\n")); err != nil {
		t.Fatal(err)
	}
	got := rec.all()
	want := []record{
		{level: slog.LevelWarn, msg: "disk low"},
		{level: slog.LevelDebug, msg: "partial"},
		{level: slog.LevelInfo, msg: "plain"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i].level != want[i].level || got[i].msg != want[i].msg {
			t.Errorf("record %d = %v %q, want %v %q", i, got[i].level, got[i].msg, want[i].level, want[i].msg)
		}
	}
}

func TestNewHCLogJSON(t *testing.T) {
	tests := []struct {
		level slog.Level
		want  string
	}{
		{LevelTrace, "trace"},
		{slog.LevelDebug, "debug"},
		{slog.LevelInfo, "info"},
		{slog.LevelWarn, "warn"},
		{slog.LevelError, "error"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			var buf bytes.Buffer
			l := NewHCLogJSON(&buf, LevelTrace)
			l.Log(context.Background(), tt.level, "installed", "package", "hello")
			var line map[string]any
			if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
				t.Fatalf("not one JSON line: %q: %v", buf.String(), err)
			}
			if line["@level"] != tt.want || line["@message"] != "installed" || line["package"] != "hello" {
				t.Fatalf("line %v, want @level=%s @message=installed package=hello", line, tt.want)
			}
			ts, _ := line["@timestamp"].(string)
			if !strings.Contains(ts, "T") || strings.Count(buf.String(), "\n") != 1 {
				t.Fatalf("line %q: want an @timestamp and one line", buf.String())
			}
		})
	}
}

// A component named under a parent that named its own is logged once.
func TestNewLogsAnAttributeOnce(t *testing.T) {
	var b strings.Builder
	l, err := New(&b, "info", "text")
	if err != nil {
		t.Fatal(err)
	}
	l.With("component", "coordinator", "pid", 7).With("component", "artifacts").Info("hello", "n", 1)
	got := b.String()
	if strings.Count(got, "component=") != 1 || !strings.Contains(got, "component=artifacts") || !strings.Contains(got, "pid=7") || !strings.Contains(got, "n=1") {
		t.Fatalf("logged %q", got)
	}
	b.Reset()
	l.With("component", "x").WithGroup("g").With("a", 1).Info("grouped")
	if got := b.String(); !strings.Contains(got, "component=x") || !strings.Contains(got, "g.a=1") {
		t.Fatalf("logged %q", got)
	}
}
