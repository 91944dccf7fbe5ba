package logging

import (
	"context"
	"log/slog"
)

// dedup is a handler on which a logger's attribute given again replaces
// the one given before, instead of both being written: a part that names
// its component under a parent that named its own logs one component
// ("component=artifacts", not "component=coordinator component=artifacts").
// Attributes of a record itself are written as given.
type dedup struct {
	base  slog.Handler // without this logger's attributes
	attrs []slog.Attr
	h     slog.Handler // base with attrs: what writes
}

func newDedup(h slog.Handler) slog.Handler { return &dedup{base: h, h: h} }

func (d *dedup) Enabled(ctx context.Context, l slog.Level) bool { return d.h.Enabled(ctx, l) }

func (d *dedup) Handle(ctx context.Context, r slog.Record) error { return d.h.Handle(ctx, r) }

func (d *dedup) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return d
	}
	merged := append([]slog.Attr(nil), d.attrs...)
	for _, a := range as {
		replaced := false
		for i := range merged {
			if merged[i].Key == a.Key {
				merged[i], replaced = a, true
				break
			}
		}
		if !replaced {
			merged = append(merged, a)
		}
	}
	return &dedup{base: d.base, attrs: merged, h: d.base.WithAttrs(merged)}
}

// WithGroup nests what follows; attributes given after it are the group's
// and are not merged with those before.
func (d *dedup) WithGroup(name string) slog.Handler {
	if name == "" {
		return d
	}
	return d.h.WithGroup(name)
}
