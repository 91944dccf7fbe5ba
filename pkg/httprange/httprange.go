// Package httprange bounds the Range header that the relay and the office
// peer cache pass to net/http's ServeContent. Before Go 1.26.9,
// ServeContent parses any number of ranges, so one request with tens of
// thousands of tiny ranges costs the server much CPU (GO-2026-6609). Outpost's own clients ask for one range; a browser or
// download tool asks for a few. Check refuses more, whatever Go the binary
// was built with.
package httprange

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Bounds on one request's Range header.
const (
	MaxRanges = 16
	MaxBytes  = 1024
)

// ErrTooMany is returned by Check for a Range header past the bounds.
var ErrTooMany = errors.New("too many byte ranges")

// Check returns an error wrapping ErrTooMany when r's Range header asks for
// more than MaxRanges ranges or is longer than MaxBytes; otherwise nil
// (no Range header, or one ServeContent may parse, valid or not).
func Check(r *http.Request) error {
	vs := r.Header.Values("Range")
	n, size := 0, 0
	for _, v := range vs {
		size += len(v)
		n += strings.Count(v, ",") + 1
	}
	if size > MaxBytes || n > MaxRanges {
		return fmt.Errorf("%w: the Range header asks for %d ranges in %d bytes; at most %d ranges in %d bytes are served",
			ErrTooMany, n, size, MaxRanges, MaxBytes)
	}
	return nil
}
