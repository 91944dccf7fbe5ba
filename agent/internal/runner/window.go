package runner

import (
	"fmt"
	"strconv"
	"time"
)

// window is a daily deployment window in an office's local time; it may
// span midnight (22:00-04:00).
type window struct {
	start, end int // minutes after local midnight
	text       string
}

func parseWindow(s string) (window, error) {
	if len(s) != 11 || s[2] != ':' || s[5] != '-' || s[8] != ':' {
		return window{}, fmt.Errorf("window %q is not HH:MM-HH:MM", s)
	}
	clock := func(hh, mm string) (int, error) {
		h, err1 := strconv.Atoi(hh)
		m, err2 := strconv.Atoi(mm)
		if err1 != nil || err2 != nil || h < 0 || h > 23 || m < 0 || m > 59 {
			return 0, fmt.Errorf("window %q has a time that is not HH:MM", s)
		}
		return h*60 + m, nil
	}
	start, err := clock(s[0:2], s[3:5])
	if err != nil {
		return window{}, err
	}
	end, err := clock(s[6:8], s[9:11])
	if err != nil {
		return window{}, err
	}
	if start == end {
		return window{}, fmt.Errorf("window %q is empty", s)
	}
	return window{start: start, end: end, text: s}, nil
}

// open reports whether now falls inside the window in loc, and if not, how
// long until it opens. Wall-clock arithmetic is done in loc, so that the
// window follows the office's daylight-saving changes.
func (w window) open(now time.Time, loc *time.Location) (bool, time.Duration) {
	t := now.In(loc)
	m := t.Hour()*60 + t.Minute()
	var in bool
	if w.start < w.end {
		in = m >= w.start && m < w.end
	} else {
		in = m >= w.start || m < w.end
	}
	if in || w.landed(t, loc) {
		return true, 0
	}
	next := time.Date(t.Year(), t.Month(), t.Day(), w.start/60, w.start%60, 0, 0, loc)
	if !next.After(t) {
		next = time.Date(t.Year(), t.Month(), t.Day()+1, w.start/60, w.start%60, 0, 0, loc)
	}
	return false, next.Sub(t)
}

// landed reports whether t is inside a window whose opening time the
// clocks skipped that day (they went forward over it, as at 02:00 in
// spring in much of Europe): such a window opens when the clocks land,
// as cron runs what the jump skipped, and keeps its closing time, or
// when that was skipped too, its length. Without this a window of
// 02:00-03:00 did not open at all that day.
func (w window) landed(t time.Time, loc *time.Location) bool {
	y, mo, d := t.Date()
	for _, day := range []int{d, d - 1} {
		opening := time.Date(y, mo, day, w.start/60, w.start%60, 0, 0, loc)
		if opening.Hour()*60+opening.Minute() == w.start {
			continue // the clocks showed it: the wall clock decides
		}
		endDay := day
		if w.end < w.start {
			endDay++
		}
		closing := time.Date(y, mo, endDay, w.end/60, w.end%60, 0, 0, loc)
		if !closing.After(opening) {
			closing = opening.Add(time.Duration((w.end-w.start+24*60)%(24*60)) * time.Minute)
		}
		if !t.Before(opening) && t.Before(closing) {
			return true
		}
	}
	return false
}
