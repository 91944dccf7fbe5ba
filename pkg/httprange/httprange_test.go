package httprange

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	many := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = "0-0"
		}
		return "bytes=" + strings.Join(parts, ",")
	}
	for _, tc := range []struct {
		name   string
		ranges []string
		ok     bool
	}{
		{"none", nil, true},
		{"one", []string{"bytes=0-99"}, true},
		{"suffix", []string{"bytes=-500"}, true},
		{"malformed is ServeContent's to refuse", []string{"bytes=x"}, true},
		{"at the bound", []string{many(MaxRanges)}, true},
		{"one past", []string{many(MaxRanges + 1)}, false},
		{"split over two headers", []string{many(MaxRanges / 2), many(MaxRanges/2 + 1)}, false},
		{"long", []string{"bytes=" + strings.Repeat("0", MaxBytes) + "-"}, false},
	} {
		r, _ := http.NewRequest("GET", "http://x/", nil)
		for _, v := range tc.ranges {
			r.Header.Add("Range", v)
		}
		err := Check(r)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrTooMany) {
			t.Errorf("%s: %v does not wrap ErrTooMany", tc.name, err)
		}
	}
}

// Whatever Range headers a client sends, Check lets through only what
// ServeContent answers within the bounds: at most MaxRanges parts, with a
// clear error wrapping ErrTooMany for the rest. Two headers are fuzzed,
// since a client may split its ranges over several.
func FuzzCheck(f *testing.F) {
	f.Add("bytes=0-99", "")
	f.Add("bytes=-500", "")
	f.Add("bytes=0-0,1-1,2-2,3-3,4-4,5-5,6-6,7-7,8-8,9-9,10-10,11-11,12-12,13-13,14-14,15-15", "")
	f.Add("bytes=0-0,1-1,2-2,3-3,4-4,5-5,6-6,7-7", "bytes=8-8,9-9,10-10,11-11,12-12,13-13,14-14,15-15,16-16")
	f.Add("bytes="+strings.Repeat("0", MaxBytes)+"-", "")
	f.Add("bytes=0-,0-,0-", "bytes=x")
	f.Add("bytes=,,,,", "")
	f.Add("", "bytes=5-1")
	content := []byte(strings.Repeat("0123456789", 10))
	f.Fuzz(func(t *testing.T, h1, h2 string) {
		r := httptest.NewRequest("GET", "http://x/", nil)
		ranges := 0
		for _, v := range []string{h1, h2} {
			if v != "" {
				r.Header.Add("Range", v)
				ranges += strings.Count(v, ",") + 1
			}
		}
		err := Check(r)
		if err != nil {
			if !errors.Is(err, ErrTooMany) || !strings.Contains(err.Error(), "ranges") {
				t.Fatalf("Check(%q, %q) = %v: not a clear ErrTooMany", h1, h2, err)
			}
			if len(h1)+len(h2) <= MaxBytes && ranges <= MaxRanges {
				t.Fatalf("Check(%q, %q) refused a header within the bounds: %v", h1, h2, err)
			}
			return
		}
		if len(h1)+len(h2) > MaxBytes || ranges > MaxRanges {
			t.Fatalf("Check let %d ranges in %d bytes through", ranges, len(h1)+len(h2))
		}
		// What Check lets through, ServeContent answers with at most
		// MaxRanges parts.
		w := httptest.NewRecorder()
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(content))
		switch w.Code {
		case http.StatusOK, http.StatusRequestedRangeNotSatisfiable:
		case http.StatusPartialContent:
			mt, params, err := mime.ParseMediaType(w.Header().Get("Content-Type"))
			if err != nil || mt != "multipart/byteranges" {
				return // one range
			}
			mr := multipart.NewReader(w.Body, params["boundary"])
			parts := 0
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("multipart answer: %v", err)
				}
				p.Close()
				if parts++; parts > MaxRanges {
					t.Fatalf("Check(%q, %q) let through an answer of more than %d parts", h1, h2, MaxRanges)
				}
			}
		default:
			t.Fatalf("ServeContent answered %d", w.Code)
		}
	})
}
