package patches

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"
)

// A feed comes from outside, and what Parse says about it reaches the
// admin's terminal (the API's error, printed by the CLI): an id the feed
// made up must not carry an escape sequence there (here an OSC 52 write
// to the admin's clipboard), nor a newline that forges lines.
func TestFeedErrorsShowNoControlsOfTheFeed(t *testing.T) {
	feed := "patches:\n  - id: \"\\e]52;c;cm0gLXJmIH4K\\a\\nOUT-9: imported\"\n    severity: low\n    package: p\n    fixed_version: '1'\n    artifact: " + shaA + "\n"
	_, err := Parse([]byte(feed), time.Unix(0, 0))
	var fe *FeedError
	if !errors.As(err, &fe) {
		t.Fatalf("Parse = %v; want a FeedError", err)
	}
	for _, c := range err.Error() {
		if !unicode.IsPrint(c) {
			t.Fatalf("the error carries %U:\n%q", c, err.Error())
		}
	}
}

// The patch plugin hands fixed_version to the package plugin as the
// version to install, which refuses one longer than 128 bytes or with
// characters that are not printable: a feed whose versions agents refuse
// would be imported, approved and signed into policy, and then fail on
// every computer. The feed is refused instead, as for any other wrong
// field.
func TestFeedWithAVersionAgentsRefuseIsNotImported(t *testing.T) {
	for name, v := range map[string]string{
		"escape":       `"2.0\e[2J"`,
		"carriage":     `"2.0\rx"`,
		"nbsp":         `"2.0\u00a0b"`,
		"129 bytes":    strings.Repeat("1", 129),
		"bidi":         `"2.0\u202e1"`,
		"vertical tab": `"2.0\vx"`,
	} {
		t.Run(name, func(t *testing.T) {
			feed := "patches:\n  - {id: A, severity: low, package: p, fixed_version: " + v + ", artifact: " + shaA + "}\n"
			ps, err := Parse([]byte(feed), time.Unix(0, 0))
			var fe *FeedError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), "fixed_version") {
				t.Fatalf("Parse = %+v, %v; want a FeedError about fixed_version", ps, err)
			}
		})
	}
	feed := "patches:\n  - {id: A, severity: low, package: p, fixed_version: '1:2.36-9+deb12u4~bpo', artifact: " + shaA + "}\n"
	if _, err := Parse([]byte(feed), time.Unix(0, 0)); err != nil {
		t.Fatalf("a Debian version is refused: %v", err)
	}
}
