package httprange

import (
	"errors"
	"net/http"
	"strings"
	"testing"
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
