// Package version orders package versions as package managers do: the
// patch plugin judges a host's package by it, and the coordinator a
// policy's package pins against its approved patches.
package version

import (
	"strconv"
	"strings"
)

// Compare orders versions as package managers do; it returns -1,
// 0 or 1. A version is read as runs of digits (compared as numbers) and of
// other letters (compared as text), separators aside: "1.10" > "1.9",
// "rc10" > "rc2". Where one version has more:
//   - a run after "~" makes it older, as in Debian: "2.0~rc1" < "2.0";
//   - so does a run of letters after a separator, a pre-release as in
//     semver: "2.0.0-rc1" < "2.0.0", "1.4.2-beta" < "1.4.2", and a
//     pre-release word glued to digits: "2.0rc1" < "2.0";
//   - any other run makes it newer: "2.0.1" > "2.0", "1.2-1" > "1.2",
//     and other letters glued to digits, "1.0.1a" > "1.0.1".
//
// Where both have a run, the runs rank in that same order (after "~",
// pre-release letters, other letters, digits: "1.0.1" > "1.0.rc1"), the
// end of a version between the pre-releases and the rest, so that the
// order holds from one comparison to the next.
func Compare(a, b string) int {
	ta, tb := versionRuns(a), versionRuns(b)
	for i := 0; i < max(len(ta), len(tb)); i++ {
		switch {
		case i >= len(ta):
			return cmpOrder(rankEnd, tb[i].rank())
		case i >= len(tb):
			return cmpOrder(ta[i].rank(), rankEnd)
		}
		if c := ta[i].compare(tb[i]); c != 0 {
			return c
		}
	}
	return 0
}

// versionRun is a run of digits or of letters in a version.
type versionRun struct {
	text    string
	digits  bool
	tilde   bool // after a "~"
	glued   bool // right after the run before, no separator between
	numeric uint64
}

func versionRuns(v string) []versionRun {
	var out []versionRun
	tilde, glued := false, false
	for i := 0; i < len(v); {
		c := v[i]
		if sep(rune(c)) {
			if c == '~' {
				tilde = true
			}
			glued = false
			i++
			continue
		}
		j := i
		digits := c >= '0' && c <= '9'
		for j < len(v) && !sep(rune(v[j])) && (v[j] >= '0' && v[j] <= '9') == digits {
			j++
		}
		r := versionRun{text: v[i:j], digits: digits, tilde: tilde, glued: glued && len(out) > 0}
		if digits {
			n, err := strconv.ParseUint(strings.TrimLeft(r.text, "0"), 10, 64)
			if err != nil && strings.TrimLeft(r.text, "0") != "" {
				n = ^uint64(0) // beyond any version's number
			}
			r.numeric = n
		}
		out = append(out, r)
		tilde, glued, i = false, true, j
	}
	return out
}

// The ranks of runs, lowest (oldest) first. The end of a version ranks
// among them, so that "where one version has more" and "where both have a
// run" are one order: runs that make a version older than its end rank
// below it, those that make it newer above.
const (
	rankTilde  = iota // after "~"
	rankPre           // letters after a separator, or a pre-release word
	rankEnd           // no run left
	rankLetter        // other letters glued to digits
	rankDigits
)

func (r versionRun) rank() int {
	switch {
	case r.tilde:
		return rankTilde
	case r.digits:
		return rankDigits
	case !r.glued || preRelease[strings.ToLower(r.text)]:
		return rankPre
	}
	return rankLetter
}

// preRelease are the words that make a version a pre-release even glued
// to its digits ("2.0rc1", as Python writes it); other letters glued to
// digits are a later release ("1.0.1a", as OpenSSL writes it).
var preRelease = map[string]bool{"alpha": true, "beta": true, "rc": true, "pre": true, "preview": true, "dev": true, "snapshot": true}

func (r versionRun) compare(o versionRun) int {
	if c := cmpOrder(r.rank(), o.rank()); c != 0 {
		return c
	}
	switch {
	case r.digits && o.digits:
		return cmpOrder(r.numeric, o.numeric)
	case r.digits != o.digits: // after "~" both
		if r.digits {
			return 1
		}
		return -1
	}
	return strings.Compare(r.text, o.text)
}

func cmpOrder[T int | uint64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func sep(r rune) bool { return r == '.' || r == '-' || r == '+' || r == '~' || r == '_' }
