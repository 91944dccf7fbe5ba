package session

import "regexp"

var termPattern = regexp.MustCompile(`^[A-Za-z0-9._+-]{1,64}$`)

// termName is the technician's TERM when it is a plausible terminal name,
// else a safe default: it ends up in the shell's environment.
func termName(t string) string {
	if termPattern.MatchString(t) {
		return t
	}
	return "xterm"
}

// clampCells bounds a terminal dimension sent by the technician: zero means
// the default, and nothing is larger than 1000 cells.
func clampCells(v uint32, def uint16) uint16 {
	switch {
	case v == 0:
		return def
	case v > 1000:
		return 1000
	}
	return uint16(v)
}
