package upstream

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"testing"

	"github.com/outposthq/outpost/pkg/testutil"
)

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in           string
		first, total int64
		ok           bool
	}{
		{"bytes 0-0/1", 0, 1, true},
		{"bytes 10-99/100", 10, 100, true},
		{"bytes 99-99/100", 99, 100, true},
		{"bytes 0-100/100", 0, 0, false},
		{"bytes 5-4/100", 0, 0, false},
		{"bytes */100", 0, 0, false},
		{"bytes -1-5/100", 0, 0, false},
		{"bytes +1-5/100", 0, 0, false},
		{"items 0-1/2", 0, 0, false},
		{"bytes 0-1/*", 0, 0, false},
		{"bytes 0-1", 0, 0, false},
		{"", 0, 0, false},
		{"bytes 0-9223372036854775807/9223372036854775808", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			first, total, err := parseContentRange(tt.in)
			if (err == nil) != tt.ok || (tt.ok && (first != tt.first || total != tt.total)) {
				t.Errorf("parse(%q) = %d, %d, %v", tt.in, first, total, err)
			}
		})
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-0/1", "bytes 10-99/100", "bytes */1", "bytes 1-0/0", "bytes 0-1/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		first, total, err := parseContentRange(s)
		if err == nil && (first < 0 || first >= total) {
			t.Fatalf("parse(%q) accepted first %d of total %d", s, first, total)
		}
	})
}

// OpenRange against a real MinIO: parts at the edges and the total size.
func TestOpenRangeMinIO(t *testing.T) {
	m := testutil.StartMinIO(t)
	m.MakeBucket(t, bucket)
	data := make([]byte, 100_000)
	rand.Read(data)
	hash := put(t, m.Client(t), bucket, data)
	u, _ := newUpstream(t, Static{Endpoint: m.Endpoint, Bucket: bucket, AccessKey: m.AccessKey, SecretKey: m.SecretKey})
	for _, tt := range []struct{ off, n int64 }{{0, -1}, {0, 1}, {99_999, 1}, {99_999, -1}, {1, 99_999}, {50_000, 10}} {
		rc, size, err := u.OpenRange(context.Background(), hash, tt.off, tt.n)
		if err != nil {
			t.Fatalf("%d+%d: %v", tt.off, tt.n, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		end := int64(len(data))
		if tt.n > 0 {
			end = tt.off + tt.n
		}
		if err != nil || size != int64(len(data)) || !bytes.Equal(got, data[tt.off:end]) {
			t.Errorf("%d+%d: size %d, %d bytes, %v", tt.off, tt.n, size, len(got), err)
		}
	}
	if _, _, err := u.OpenRange(context.Background(), hash, 100_000, -1); err == nil {
		t.Error("a range at the size was not refused")
	}

	// S3 refuses every range of an empty object; the first one is read
	// whole instead.
	empty := put(t, m.Client(t), bucket, nil)
	rc, size, err := u.OpenRange(context.Background(), empty, 0, 4<<20)
	if err != nil {
		t.Fatalf("first range of an empty object: %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || size != 0 || len(got) != 0 {
		t.Errorf("empty object: size %d, %d bytes, %v", size, len(got), err)
	}
}
