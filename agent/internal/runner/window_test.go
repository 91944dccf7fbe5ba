package runner

import (
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		window   string
		utc      string // now, in UTC
		wantOpen bool
		wantWait time.Duration
	}{
		// 22:00-04:00 Berlin is 21:00-03:00 UTC in winter.
		{"22:00-04:00", "2026-11-25T20:59:00Z", false, time.Minute},
		{"22:00-04:00", "2026-11-25T21:00:00Z", true, 0},
		{"22:00-04:00", "2026-11-25T23:30:00Z", true, 0}, // after midnight Berlin time
		{"22:00-04:00", "2026-11-26T02:59:00Z", true, 0},
		{"22:00-04:00", "2026-11-26T03:00:00Z", false, 18 * time.Hour},
		// In summer Berlin is UTC+2.
		{"22:00-04:00", "2026-07-01T20:00:00Z", true, 0},
		{"09:00-17:00", "2026-11-25T16:00:00Z", false, 16 * time.Hour}, // 17:00 Berlin: closed
		{"09:00-17:00", "2026-11-25T08:00:00Z", true, 0},
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
				t.Fatalf("open = %v, wait %v; want %v, %v", open, wait, tt.wantOpen, tt.wantWait)
			}
		})
	}
	for _, bad := range []string{"", "22-04", "24:00-01:00", "10:00-10:00", "ab:cd-ef:gh"} {
		if _, err := parseWindow(bad); err == nil {
			t.Errorf("parseWindow(%q) accepted", bad)
		}
	}
}
