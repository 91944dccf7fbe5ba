package patches

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// maxErrorBytes is what a refused feed's error may take: it is the API's
// 400 body and what the CLI prints.
const maxErrorBytes = 16 << 10

// Parse checked every entry and listed every problem, each quoting the
// value in full. A feed within the size limit made of empty entries
// ("patches: [{},{},...]": 3 bytes an entry, 5 problems each) made an
// error a hundred times its size: a 4 MiB feed gave a 464 MB message
// after 3.5 GB of allocations and 9 s of CPU, which the API then copied
// into a JSON body — one import could take the coordinator down. A feed
// has at most MaxFeedPatches entries, and an error lists the first
// problems, each quoting a bounded part of the value, and says how many
// more there are.
func TestAFeedFullOfBadEntriesGetsAShortError(t *testing.T) {
	many := func(n int, entry string) string {
		var b strings.Builder
		b.WriteString("patches: [")
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(entry)
		}
		b.WriteString("]\n")
		return b.String()
	}
	long := strings.Repeat("x", 1<<20)
	tests := []struct {
		name, feed string
		want       []string
	}{
		{"200000 empty entries", many(200_000, "{}"),
			[]string{fmt.Sprintf("the feed has 200000 patches, more than the limit of %d", MaxFeedPatches)}},
		{"as many bad entries as allowed", many(MaxFeedPatches, "{}"),
			[]string{"patch 1: no id", "more problems)"}},
		{"as many entries of the wrong type as allowed", many(MaxFeedPatches, "x"),
			[]string{"the feed is malformed", "more problems)"}},
		{"an id of 1 MiB", "patches:\n  - {id: " + long + ", severity: low, package: p, fixed_version: '1', artifact: " + shaA + "}\n",
			[]string{"patch 1: id \"xxxx"}},
		{"a version of 1 MiB", "patches:\n  - {id: A, severity: low, package: p, fixed_version: " + long + ", artifact: " + shaA + "}\n",
			[]string{"patch A: fixed_version \"xxxx"}},
		{"a superseded id of 1 MiB", "patches:\n  - {id: A, severity: low, package: p, fixed_version: '1', artifact: " + shaA + ", supersedes: [" + long + "]}\n",
			[]string{"patch A: supersedes \"xxxx"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.feed) > MaxFeed {
				t.Fatalf("the test's feed is %d bytes, beyond MaxFeed", len(tt.feed))
			}
			ps, err := Parse([]byte(tt.feed), time.Unix(0, 0))
			var fe *FeedError
			if !errors.As(err, &fe) {
				t.Fatalf("Parse = %d patches, %v; want a FeedError", len(ps), err)
			}
			msg := err.Error()
			if len(msg) > maxErrorBytes {
				t.Fatalf("the error is %d bytes (more than %d), starting %.300q", len(msg), maxErrorBytes, msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("the error does not say %q:\n%.2000s", w, msg)
				}
			}
		})
	}
}
