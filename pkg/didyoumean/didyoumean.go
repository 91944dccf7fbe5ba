// Package didyoumean finds the word a typo meant, for error messages that
// say "did you mean ...?" (policy fields, configuration keys, commands).
package didyoumean

import "strings"

// Closest is the word of valid nearest to got, case aside, when it is at
// most two edits away (an edit: a letter added, dropped, changed, or two
// neighbours swapped); ok is false when none is that near.
func Closest(got string, valid []string) (word string, ok bool) {
	best, bestDist := "", 3
	for _, v := range valid {
		if d := Distance(strings.ToLower(got), strings.ToLower(v)); d < bestDist {
			best, bestDist = v, d
		}
	}
	return best, best != ""
}

// Hint is ` (did you mean "x"?)` for a near miss of got, else "".
func Hint(got string, valid []string) string {
	if w, ok := Closest(got, valid); ok {
		return ` (did you mean "` + w + `"?)`
	}
	return ""
}

// Distance is the Damerau-Levenshtein distance (with adjacent
// transpositions, the commonest typo) between two short words; words
// longer than 64 runes are 64 apart from anything, which keeps the cost
// bounded.
func Distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
