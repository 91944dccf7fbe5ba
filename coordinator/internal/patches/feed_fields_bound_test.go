package patches

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// A catalog patch's title and supersedes list are signed into the policy
// of every office (approved, or report-only for hosts to scan), so they
// reach every agent at every revision: the feed bounded neither. One
// entry with a title of megabytes made every office's policy that large,
// beyond what members hand each other, and a few of them beyond the
// largest message the wire takes (8 MiB), so that no agent could receive
// a policy any more. A title also reached terminals and the console as
// it was, newlines and escapes included. Both are refused with the entry
// named, like every other wrong field.
func TestFeedFieldsEveryAgentReceivesAreBounded(t *testing.T) {
	entry := func(extra string) string {
		return "patches:\n  - {id: A, severity: low, package: p, fixed_version: '1', artifact: " + shaA + extra + "}\n"
	}
	ids := func(n int) string {
		var s []string
		for i := range n {
			s = append(s, fmt.Sprintf("OLD-%d", i))
		}
		return strings.Join(s, ", ")
	}
	for name, tc := range map[string]struct {
		extra, want string
	}{
		"title of 1 MiB":             {", title: " + strings.Repeat("t", 1<<20), "title"},
		"title one byte too long":    {", title: " + strings.Repeat("t", MaxTitle+1), "title"},
		"title with a newline":       {`, title: "fixes a crash\nOUT-9: imported"`, "title"},
		"title with an escape":       {`, title: "fixes \e[2J a crash"`, "title"},
		"title with a bidi override": {`, title: "fixes \u202e a crash"`, "title"},
		"too many superseded ones":   {", supersedes: [" + ids(MaxSupersedes+1) + "]", "supersedes"},
	} {
		t.Run(name, func(t *testing.T) {
			ps, err := Parse([]byte(entry(tc.extra)), time.Unix(0, 0))
			var fe *FeedError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), "patch A: "+tc.want) {
				t.Fatalf("Parse = %d patches, %.300v; want a FeedError about the %s of patch A", len(ps), err, tc.want)
			}
		})
	}
	for name, extra := range map[string]string{
		"title at the limit":            ", title: " + strings.Repeat("t", MaxTitle),
		"title with words and unicode":  `, title: "hello fixes CVE-2026-1234 — ünïcode,\u00a0«\u00a0quotes\u00a0»"`,
		"as many superseded as allowed": ", supersedes: [" + ids(MaxSupersedes) + "]",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse([]byte(entry(extra)), time.Unix(0, 0)); err != nil {
				t.Fatalf("Parse: %.300v", err)
			}
		})
	}
}
