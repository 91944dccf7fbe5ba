package relay

import (
	"strings"
	"testing"
	"time"
)

// The cache and bandwidth keys: from YAML, the environment and flags, and
// refused when they make no sense.
func TestCacheAndLimitSettings(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		env     map[string]string
		want    Config
		wantErr string
	}{
		{name: "yaml", yaml: "cache_max_bytes: 1000000\nupstream_bytes_per_sec: 5000000\negress_bytes_per_sec: 7\nparallel_ranges: 8\nparallel_min_bytes: 1048576\n",
			want: Config{CacheMaxBytes: 1000000, UpstreamBytesPerSec: 5000000, EgressBytesPerSec: 7, ParallelRanges: 8, ParallelMinBytes: 1 << 20}},
		{name: "environment over yaml", yaml: "cache_max_bytes: 5\n",
			env:  map[string]string{"OUTPOST_RELAY_CACHE_MAX_BYTES": "99", "OUTPOST_RELAY_PARALLEL_RANGES": "2"},
			want: Config{CacheMaxBytes: 99, ParallelRanges: 2, ParallelMinBytes: 64 << 20}},
		{name: "not a number", env: map[string]string{"OUTPOST_RELAY_UPSTREAM_BYTES_PER_SEC": "5MB"}, wantErr: "whole number"},
		{name: "negative cap", yaml: "cache_max_bytes: -1\n", wantErr: "cache_max_bytes -1: must not be negative"},
		{name: "negative rate", yaml: "egress_bytes_per_sec: -5\n", wantErr: "egress_bytes_per_sec -5"},
		{name: "too many ranges", yaml: "parallel_ranges: 1000\n", wantErr: "parallel_ranges 1000: want 1 to 64"},
		{name: "send buffer set", yaml: "lan_send_buffer_bytes: 262144\n",
			want: Config{ParallelRanges: 4, ParallelMinBytes: 64 << 20, LANSendBufferBytes: 256 << 10}},
		{name: "send buffer too small", yaml: "lan_send_buffer_bytes: 4096\n", wantErr: "lan_send_buffer_bytes 4096: want 65536 to 67108864"},
		{name: "send buffer too large", env: map[string]string{"OUTPOST_RELAY_LAN_SEND_BUFFER_BYTES": "1000000000"}, wantErr: "lan_send_buffer_bytes 1000000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, "data_dir: /tmp/x\n"+tt.yaml)
			c, err := LoadConfig(path, envFrom(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.LANSendBufferBytes != tt.want.LANSendBufferBytes {
				t.Errorf("lan_send_buffer_bytes %d, want %d", c.LANSendBufferBytes, tt.want.LANSendBufferBytes)
			}
			if tt.want.ParallelRanges == 0 {
				tt.want.ParallelRanges = 4
			}
			got := Config{CacheMaxBytes: c.CacheMaxBytes, UpstreamBytesPerSec: c.UpstreamBytesPerSec,
				EgressBytesPerSec: c.EgressBytesPerSec, ParallelRanges: c.ParallelRanges, ParallelMinBytes: c.ParallelMinBytes}
			if got.ParallelMinBytes != tt.want.ParallelMinBytes && tt.want.ParallelMinBytes != 0 || got.CacheMaxBytes != tt.want.CacheMaxBytes ||
				got.UpstreamBytesPerSec != tt.want.UpstreamBytesPerSec || got.EgressBytesPerSec != tt.want.EgressBytesPerSec ||
				got.ParallelRanges != tt.want.ParallelRanges {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The egress limit is on the path of every byte sent to agents.
func TestEgressLimitIsSpent(t *testing.T) {
	data := pattern(100_000)
	cfg := testConfig(t)
	cfg.EgressBytesPerSec = 1 // refills 1 byte/s: what is spent stays spent
	tr := startRelay(t, cfg, WithUpstream(newStalled(1<<40, data)))
	burst := tr.egress.Burst()
	for i := range 2 { // a miss, then a hit
		resp, body := do(t, "GET", tr.url+BlobPath+hashOf(data), nil)
		if resp.StatusCode != 200 || len(body) != len(data) {
			t.Fatalf("get %d: %d, %d bytes", i, resp.StatusCode, len(body))
		}
	}
	// A burst is paid for after it went out, so the client can have the
	// last byte before the handler pays for it: wait for the handlers.
	want := float64(burst-2*len(data)) + 10
	deadline := time.Now().Add(5 * time.Second)
	left := tr.egress.Tokens()
	for left > want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		left = tr.egress.Tokens()
	}
	if left > want {
		t.Errorf("egress limiter has %.0f tokens left of %d after sending %d bytes", left, burst, 2*len(data))
	}
}
