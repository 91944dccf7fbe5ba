package runner

import (
	"testing"
	"time"
)

// On the night the clocks go forward (Berlin, 29 March 2026: 02:00 CET
// becomes 03:00 CEST, at 01:00 UTC) a window that opens in the skipped
// hour opens when the clocks land, keeping its closing time or, when that
// was skipped too, its length; one that closes in the skipped hour closes
// when they land. A window of 02:00-03:00 did not open at
// all that night. When the clocks go back (25 October 2026: 03:00 CEST
// becomes 02:00 CET, at 01:00 UTC), the wall clock decides, as on any
// other night: the hour it shows twice is in the window twice.
func TestWindowAcrossDaylightSavingChanges(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		window   string
		utc      string
		wantOpen bool
		wantWait time.Duration
	}{
		{"02:00-03:00", "2026-03-29T00:30:00Z", false, 30 * time.Minute}, // 01:30 CET
		{"02:00-03:00", "2026-03-29T01:00:00Z", true, 0},                 // 03:00 CEST: the clocks landed
		{"02:00-03:00", "2026-03-29T01:59:00Z", true, 0},                 // 03:59 CEST: an hour, its length
		{"02:00-03:00", "2026-03-29T02:00:00Z", false, 22 * time.Hour},   // 04:00 CEST
		{"02:00-04:00", "2026-03-29T01:30:00Z", true, 0},                 // 03:30 CEST
		{"02:00-04:00", "2026-03-29T02:00:00Z", false, 22 * time.Hour},   // 04:00 CEST: it keeps its closing time
		{"02:15-02:45", "2026-03-29T01:20:00Z", true, 0},                 // 03:20 CEST
		{"02:15-02:45", "2026-03-29T01:45:00Z", false, 22*time.Hour + 30*time.Minute},
		{"23:30-02:30", "2026-03-29T00:45:00Z", true, 0},                              // 01:45 CET, opened the evening before
		{"23:30-02:30", "2026-03-29T01:00:00Z", false, 20*time.Hour + 30*time.Minute}, // 03:00 CEST: past its closing time
		{"02:00-03:00", "2026-03-30T01:00:00Z", false, 23 * time.Hour},                // the next day: 03:00 CEST, as always
		{"02:00-03:00", "2026-10-25T00:30:00Z", true, 0},                              // 02:30 CEST
		{"02:00-03:00", "2026-10-25T01:30:00Z", true, 0},                              // 02:30 CET, the hour again
		{"02:00-03:00", "2026-10-25T02:00:00Z", false, 23 * time.Hour},                // 03:00 CET
	}
	for _, tt := range tests {
		t.Run(tt.window+"@"+tt.utc, func(t *testing.T) {
			w, err := parseWindow(tt.window)
			if err != nil {
				t.Fatal(err)
			}
			now, _ := time.Parse(time.RFC3339, tt.utc)
			open, wait := w.open(now, berlin)
			if open != tt.wantOpen || wait != tt.wantWait {
				t.Fatalf("at %s: open = %v, wait %v; want %v, %v", now.In(berlin), open, wait, tt.wantOpen, tt.wantWait)
			}
		})
	}
}
