package logging

import (
	"log/slog"
	"time"
)

// OutageReminder is how often a run of failures is told again at Warn.
const OutageReminder = time.Hour

// Outage logs a run of failures of one thing that is retried for as long
// as it fails (a coordinator out of reach, a check-in refused): the first
// is a warning, and so is one an hour while they go on, with since when
// and how many; the rest go to Debug. A link away for days leaves a few
// lines a day, not thousands. The zero value is no outage.
type Outage struct {
	since, warned time.Time
	failures      int
}

// Failed logs one failure at now: first for the first of the run, again
// for the ones after it.
func (o *Outage) Failed(log *slog.Logger, now time.Time, first, again string, args ...any) {
	o.failures++
	switch {
	case o.failures == 1:
		o.since, o.warned = now, now
		log.Warn(first, args...)
	case now.Sub(o.warned) >= OutageReminder:
		o.warned = now
		log.Warn(again, append(args, "since", o.since.UTC().Format(time.RFC3339), "failures", o.failures)...)
	default:
		log.Debug(again, append(args, "failures", o.failures)...)
	}
}

// Over ends the run, and says how many failures it held and since when
// (0 when there was none).
func (o *Outage) Over() (failures int, since time.Time) {
	failures, since = o.failures, o.since
	*o = Outage{}
	return failures, since
}
