package logging

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// LevelTrace is the slog level hclog's Trace maps to: below Debug, so that a
// logger at debug level does not drown in go-plugin's handshake chatter.
const LevelTrace = slog.LevelDebug - 4

// hclogTimeFormat is the timestamp layout go-plugin's host parses in the JSON
// lines a plugin writes to its stderr.
const hclogTimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// HCLog adapts l to hclog.Logger, so that go-plugin's own logs and the log
// lines a plugin process writes to its stderr go through the injected slog
// logger. hclog's logger names become a "logger" attribute. The level is the
// slog handler's: SetLevel is a no-op.
func HCLog(l *slog.Logger) hclog.Logger {
	return &hclogAdapter{l: l}
}

// NewHCLogJSON returns a logger for the plugin side of go-plugin: it writes
// one JSON object per line with the keys the host parses (@level, @message,
// @timestamp), so a plugin's records reach the host's logger with their level
// and attributes. w is normally the plugin process's original stderr.
func NewHCLogJSON(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.String("@timestamp", a.Value.Time().Format(hclogTimeFormat))
			case slog.LevelKey:
				lv, _ := a.Value.Any().(slog.Level)
				return slog.String("@level", hclogLevel(lv).String())
			case slog.MessageKey:
				return slog.Attr{Key: "@message", Value: a.Value}
			}
			return a
		},
	}))
}

// hclogLevel maps a slog level to the nearest hclog level at or below it.
func hclogLevel(lv slog.Level) hclog.Level {
	switch {
	case lv < slog.LevelDebug:
		return hclog.Trace
	case lv < slog.LevelInfo:
		return hclog.Debug
	case lv < slog.LevelWarn:
		return hclog.Info
	case lv < slog.LevelError:
		return hclog.Warn
	}
	return hclog.Error
}

// slogLevel maps an hclog level to slog; ok is false for Off.
func slogLevel(lv hclog.Level) (slog.Level, bool) {
	switch lv {
	case hclog.Trace:
		return LevelTrace, true
	case hclog.Debug:
		return slog.LevelDebug, true
	case hclog.Warn:
		return slog.LevelWarn, true
	case hclog.Error:
		return slog.LevelError, true
	case hclog.Off:
		return 0, false
	}
	return slog.LevelInfo, true
}

type hclogAdapter struct {
	l       *slog.Logger // already carries the implied args
	name    string
	implied []any
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	lv, ok := slogLevel(level)
	if !ok {
		return
	}
	ctx := context.Background()
	if !a.l.Enabled(ctx, lv) {
		return
	}
	attrs := convertArgs(args)
	if a.name != "" {
		attrs = append([]any{slog.String("logger", a.name)}, attrs...)
	}
	a.l.Log(ctx, lv, msg, attrs...)
}

// convertArgs turns hclog's key/value list into slog attributes. hclog
// tolerates a trailing value without a key and hclog.Format values; so must we.
func convertArgs(args []any) []any {
	out := make([]any, 0, len(args)/2+1)
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			out = append(out, slog.Any("EXTRA_VALUE_AT_END", hclogValue(args[i])))
			break
		}
		key, ok := args[i].(string)
		if !ok {
			key = fmt.Sprint(args[i])
		}
		out = append(out, slog.Any(key, hclogValue(args[i+1])))
	}
	return out
}

func hclogValue(v any) any {
	switch v := v.(type) {
	case hclog.Format:
		if len(v) == 0 {
			return ""
		}
		format, _ := v[0].(string)
		return fmt.Sprintf(format, v[1:]...)
	case hclog.Hex:
		return fmt.Sprintf("0x%x", int(v))
	case hclog.Octal:
		return fmt.Sprintf("0%o", int(v))
	case hclog.Binary:
		return fmt.Sprintf("0b%b", int(v))
	case hclog.Quote:
		return fmt.Sprintf("%q", string(v))
	}
	return v
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(lv slog.Level) bool { return a.l.Enabled(context.Background(), lv) }

func (a *hclogAdapter) IsTrace() bool { return a.enabled(LevelTrace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(slog.LevelDebug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(slog.LevelInfo) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(slog.LevelWarn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(slog.LevelError) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.implied }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	return &hclogAdapter{
		l:       a.l.With(convertArgs(args)...),
		name:    a.name,
		implied: append(append([]any(nil), a.implied...), args...),
	}
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	if a.name != "" {
		name = a.name + "." + name
	}
	return a.ResetNamed(name)
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return &hclogAdapter{l: a.l, name: name, implied: a.implied}
}

// SetLevel does nothing: the slog handler owns the level.
func (a *hclogAdapter) SetLevel(hclog.Level) {}

func (a *hclogAdapter) GetLevel() hclog.Level {
	for _, lv := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		s, _ := slogLevel(lv)
		if a.enabled(s) {
			return lv
		}
	}
	return hclog.Off
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return &lineWriter{a: a, force: opts.ForceLevel, infer: opts.InferLevels}
}

// lineWriter logs each complete line written to it as one record.
type lineWriter struct {
	a     *hclogAdapter
	force hclog.Level
	infer bool

	mu  sync.Mutex
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.logLine(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *lineWriter) logLine(line string) {
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return
	}
	level := hclog.Info
	if w.force != hclog.NoLevel {
		level = w.force
	} else if w.infer {
		for _, p := range []struct {
			prefix string
			level  hclog.Level
		}{
			{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info},
			{"[WARN]", hclog.Warn}, {"[ERROR]", hclog.Error}, {"[ERR]", hclog.Error},
		} {
			if rest, ok := strings.CutPrefix(line, p.prefix); ok {
				level, line = p.level, strings.TrimSpace(rest)
				break
			}
		}
	}
	w.a.Log(level, line)
}
