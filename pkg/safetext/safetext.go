// Package safetext makes text that came from someone else — a command line
// or path a technician sent, a name typed at a prompt, a host's audit
// record — safe to keep and to show on a terminal: characters a terminal
// acts on or that hide what follows are written out visibly, and lengths
// are bounded on a character boundary. It also holds the rule user names
// follow, so that a host can judge a name it is told without asking the
// coordinator. It is not a general string library.
package safetext

import (
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Escape writes out visibly what a terminal would act on or what would
// hide the text after it: C0 controls and DEL (\n, \r, \t, \x1b), C1
// controls, format characters such as bidi overrides (\u202e), line and
// paragraph separators and spaces other than ASCII's, and bytes that are
// not UTF-8 (\xff). So an ESC cannot clear or retitle the reader's
// terminal, a newline cannot forge a row of a table, and a right-to-left
// override cannot make a path read backwards. Everything else is left as it
// is, backslashes too (Windows paths stay readable), so Escape(Escape(s))
// is Escape(s).
func Escape(s string) string {
	if plain(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\x`)
			b.WriteString(hex2(s[i]))
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\x`)
			b.WriteString(hex2(byte(r)))
		case r == ' ' || unicode.IsPrint(r):
			b.WriteString(s[i : i+n])
		case r <= 0xffff:
			b.WriteString(`\u`)
			b.WriteString(pad(strconv.FormatInt(int64(r), 16), 4))
		default:
			b.WriteString(`\U`)
			b.WriteString(pad(strconv.FormatInt(int64(r), 16), 8))
		}
		i += n
	}
	return b.String()
}

// plain says whether s is printable ASCII alone, which Escape leaves as it
// is: the common case costs no copy.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&0xf]})
}

func pad(s string, n int) string {
	return strings.Repeat("0", max(0, n-len(s))) + s
}

// Ellipsis marks text that Clip cut short.
const Ellipsis = "..."

// Clip bounds s to max bytes, Ellipsis included when it cuts: the cut falls
// on a character boundary, so valid UTF-8 stays valid.
func Clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	if max < len(Ellipsis) {
		return Ellipsis[:max]
	}
	cut := max - len(Ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + Ellipsis
}

// Field is s as a record keeps it: Escape, then Clip to max bytes. Only
// the head of a long s is looked at, so a quarter-megabyte path costs no
// more than a short one.
func Field(s string, max int) string {
	// Escaping never shortens text, so nothing past max bytes and one
	// character of s reaches the part of the result that Clip keeps; what
	// is left of it still makes the result too long, so the cut is marked.
	if len(s) > max+utf8.UTFMax {
		s = s[:max+utf8.UTFMax]
	}
	return Clip(Escape(s), max)
}

// userName is the coordinator's rule for the names of users and groups
// (coordinator/internal/auth.ValidName; a test of the coordinator's
// checks that the two agree): lower case, so that each person has one
// spelling.
var userName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ValidUserName says whether s could name a user on the coordinator.
func ValidUserName(s string) bool { return userName.MatchString(s) }
