package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progress shows how far an upload is on a writer, usually standard error:
// on a terminal one line redrawn in place, elsewhere (logs, CI) a plain line
// at every tenth of the way, so a log does not fill with redraws.
//
// The HTTP transport reads the body on its own goroutine, so every method
// locks; after finish nothing is printed any more.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	name     string
	total    int64 // -1 when the size is not known
	sent     int64
	now      func() time.Time
	start    time.Time
	terminal bool
	lastDraw time.Time
	lastStep int64
	lineLen  int
	finished bool
}

const (
	redrawEvery = 100 * time.Millisecond
	// unknownStep is how often a log line is written when the total is not
	// known, in bytes.
	unknownStep = 64 << 20
	barWidth    = 24
)

func newProgress(w io.Writer, name string, total int64, terminal bool, now func() time.Time) *progress {
	return &progress{w: w, name: name, total: total, now: now, start: now(), terminal: terminal}
}

// add counts n more bytes sent. A nil progress does nothing, for --quiet.
func (p *progress) add(n int) {
	if p == nil || n <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return
	}
	p.sent += int64(n)
	p.draw(false)
}

// finish draws the final state after a successful upload, or just ends the
// line after a failed one so the error starts on a line of its own.
func (p *progress) finish(ok bool) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return
	}
	if ok {
		p.draw(true)
	}
	p.finished = true
	if p.terminal && p.lineLen > 0 {
		fmt.Fprintln(p.w)
	}
}

func (p *progress) draw(final bool) {
	now := p.now()
	if p.terminal {
		if !final && now.Sub(p.lastDraw) < redrawEvery {
			return
		}
		p.lastDraw = now
		line := p.line(now)
		// Pad over the remains of a longer previous line.
		pad := max(p.lineLen-len(line), 0)
		fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
		p.lineLen = len(line)
		return
	}
	step := p.step()
	if step > p.lastStep || (final && p.total < 0) {
		p.lastStep = step
		fmt.Fprintln(p.w, p.line(now))
	}
}

// step is how many tenths are sent, or how many unknownSteps when the total
// is not known.
func (p *progress) step() int64 {
	switch {
	case p.total < 0:
		return p.sent / unknownStep
	case p.total == 0:
		return 10
	}
	return p.sent * 10 / p.total
}

func (p *progress) line(now time.Time) string {
	rate := "-"
	if elapsed := now.Sub(p.start); elapsed > 0 {
		rate = byteSize(int64(float64(p.sent)/elapsed.Seconds())) + "/s"
	}
	if p.total < 0 {
		if p.terminal {
			return fmt.Sprintf("%s  %s  %s", p.name, byteSize(p.sent), rate)
		}
		return fmt.Sprintf("%s: %s (%s)", p.name, byteSize(p.sent), rate)
	}
	pct := int64(100)
	if p.total > 0 {
		pct = p.sent * 100 / p.total
	}
	if !p.terminal {
		return fmt.Sprintf("%s: %d%% (%s of %s, %s)", p.name, pct, byteSize(p.sent), byteSize(p.total), rate)
	}
	// More than the total arrives when a file grows as it is sent, or a
	// host sends more than it said: the bar stays full.
	filled := int(min(pct, 100)) * barWidth / 100
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", barWidth-filled)
	if filled > 0 && filled < barWidth {
		bar = strings.Repeat("=", filled-1) + ">" + strings.Repeat(" ", barWidth-filled)
	}
	return fmt.Sprintf("%s [%s] %3d%%  %s / %s  %s", p.name, bar, pct, byteSize(p.sent), byteSize(p.total), rate)
}
