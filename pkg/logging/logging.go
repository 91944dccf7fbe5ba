// Package logging builds the slog loggers every part injects, and adapts
// them to hclog for go-plugin. There is no global logger.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// New returns a logger writing to w at level ("debug", "info", "warn",
// "error") in format ("text" or "json").
func New(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(newDedup(slog.NewTextHandler(w, opts))), nil
	case "json":
		return slog.New(newDedup(slog.NewJSONHandler(w, opts))), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

// Discard is a logger that drops everything, for tests that do not look.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
