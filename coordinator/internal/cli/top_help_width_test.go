package cli

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// outpost help fits an 80-column terminal: a line longer than that wraps
// there into the next column and the list becomes hard to read. Every
// command of every group is still named.
func TestTopHelpFitsEightyColumns(t *testing.T) {
	res := run(t, nil, "help")
	if res.code != 0 {
		t.Fatalf("help: %+v", res)
	}
	for _, l := range strings.Split(res.stdout, "\n") {
		if n := utf8.RuneCountInString(l); n > 80 {
			t.Errorf("a line of %d columns:\n%s", n, l)
		}
	}
	flat := strings.Join(strings.Fields(res.stdout), " ")
	for _, g := range groups {
		if line := g.name + " " + g.summary + " (" + strings.Join(g.words(), ", ") + ")"; !strings.Contains(flat, line) {
			t.Errorf("help does not have %q", line)
		}
	}
	if !strings.Contains(flat, "office create, list, change and remove offices (add, list, show, edit, rotate-key, rm, add-computer, computers, rm-computer, compliance)") {
		t.Errorf("the office group's line:\n%s", res.stdout)
	}
}
