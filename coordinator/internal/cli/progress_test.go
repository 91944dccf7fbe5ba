package cli

import (
	"bytes"
	"testing"
	"time"
)

func TestProgress(t *testing.T) {
	tests := []struct {
		name     string
		total    int64
		terminal bool
		step     time.Duration // clock advance per reading
		adds     []int
		ok       bool
		want     string
	}{
		{
			name: "log lines at each tenth crossed",
			// Readings: start, then one per add, then one at finish.
			total: 1000, step: time.Second, adds: []int{50, 100, 400, 450}, ok: true,
			want: "" +
				"f.bin: 15% (150 B of 1000 B, 75 B/s)\n" +
				"f.bin: 55% (550 B of 1000 B, 183 B/s)\n" +
				"f.bin: 100% (1000 B of 1000 B, 250 B/s)\n",
		},
		{
			name:  "a failed upload adds no line to a log",
			total: 1000, step: time.Second, adds: []int{50}, ok: false,
			want: "",
		},
		{
			name:  "a terminal line is redrawn, padded over a longer one, and ended",
			total: 2048, terminal: true, step: time.Second, adds: []int{1024, 1024}, ok: true,
			want: "" +
				"\rf.bin [===========>            ]  50%  1.0 KiB / 2.0 KiB  1.0 KiB/s" +
				"\rf.bin [========================] 100%  2.0 KiB / 2.0 KiB  1.0 KiB/s" +
				"\rf.bin [========================] 100%  2.0 KiB / 2.0 KiB  682 B/s  \n",
		},
		{
			name:  "a terminal is drawn at once, then not more than every 100ms, and at the end",
			total: 100, terminal: true, step: 10 * time.Millisecond, adds: []int{10, 10, 10}, ok: true,
			want: "" +
				"\rf.bin [=>                      ]  10%  10 B / 100 B  1000 B/s" +
				"\rf.bin [======>                 ]  30%  30 B / 100 B  750 B/s \n",
		},
		{
			name:  "a failed upload ends the terminal line",
			total: 100, terminal: true, step: time.Second, adds: []int{10}, ok: false,
			want: "\rf.bin [=>                      ]  10%  10 B / 100 B  10 B/s\n",
		},
		{
			name:  "an unknown size shows bytes and rate",
			total: -1, terminal: true, step: time.Second, adds: []int{512}, ok: true,
			want: "\rf.bin  512 B  512 B/s\rf.bin  512 B  256 B/s\n",
		},
		{
			name:  "an unknown size logs a last line",
			total: -1, step: time.Second, adds: []int{512}, ok: true,
			want: "f.bin: 512 B (256 B/s)\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			p := newProgress(&buf, "f.bin", tt.total, tt.terminal, steppingClock(testNow, tt.step))
			for _, n := range tt.adds {
				p.add(n)
			}
			p.finish(tt.ok)
			p.add(1) // after finish: no output
			p.finish(true)
			if got := buf.String(); got != tt.want {
				t.Errorf("progress\n got: %q\nwant: %q", got, tt.want)
			}
		})
	}
	var nilProgress *progress // --quiet
	nilProgress.add(1)
	nilProgress.finish(true)
}

func TestFormat(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"bytes", byteSize(1023), "1023 B"},
		{"kibibytes", byteSize(1536), "1.5 KiB"},
		{"mebibytes", byteSize(12_900_000), "12.3 MiB"},
		{"gibibytes", byteSize(16 << 30), "16.0 GiB"},
		{"seconds ago", ago(testNow, testNow.Add(-12*time.Second)), "12s ago"},
		{"just now", ago(testNow, testNow.Add(-time.Millisecond)), "just now"},
		{"clock skew", ago(testNow, testNow.Add(time.Minute)), "just now"},
		{"minutes ago", ago(testNow, testNow.Add(-3*time.Minute)), "3m ago"},
		{"hours ago", ago(testNow, testNow.Add(-47*time.Hour)), "47h ago"},
		{"days ago", ago(testNow, testNow.Add(-72*time.Hour)), "3d ago"},
		{"never", ago(testNow, time.Time{}), "never"},
		{"in a while", until(testNow, testNow.Add(23*time.Hour)), "in 23h"},
		{"expired", until(testNow, testNow.Add(-2*time.Hour)), "expired 2h ago"},
		{"short hours", shortDuration(24 * time.Hour), "24h"},
		{"short minutes", shortDuration(2 * time.Minute), "2m"},
		{"short mixed", shortDuration(90 * time.Minute), "1h30m"},
		{"short seconds", shortDuration(150 * time.Millisecond), "150ms"},
		{"one item", plural(1, "item"), "1 item"},
		{"items", plural(3, "item"), "3 items"},
		{"redact", redact("a "+testToken+" b short", testToken, "", "short"), "a [redacted] b short"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestStamp(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
		err  bool
	}{
		{`"2025-06-01T12:00:00Z"`, testNow, false},
		{`""`, time.Time{}, false},
		{`null`, time.Time{}, false},
		{`"yesterday"`, time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var s stamp
			err := s.UnmarshalJSON([]byte(tt.in))
			if (err != nil) != tt.err || !s.Equal(tt.want) {
				t.Errorf("stamp %s = %v, %v; want %v, error %v", tt.in, s.Time, err, tt.want, tt.err)
			}
		})
	}
}
