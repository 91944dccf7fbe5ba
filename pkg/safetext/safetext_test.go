package safetext

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// controls names the first character in s that a terminal acts on or that
// hides text, or invalid UTF-8; "" if there is none.
func controls(s string) string {
	if !utf8.ValidString(s) {
		return "invalid UTF-8"
	}
	for _, c := range s {
		if c != ' ' && !unicode.IsPrint(c) {
			return string(c)
		}
	}
	return ""
}

func TestEscapeWritesOutWhatATerminalWouldActOn(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain /tmp/x.sh -c 'a b'", "plain /tmp/x.sh -c 'a b'"},
		{"C:\\Windows\\x", "C:\\Windows\\x"},
		{"grüße 日本", "grüße 日本"},
		{"a\r\nb\tc", `a\r\nb\tc`},
		{"\x1b[2J\x07\x00\x7f", `\x1b[2J\x07\x00\x7f`},
		{"\u0085\u009b", `\u0085\u009b`},                     // C1: NEL, CSI
		{"abc\u202egpj.exe", `abc\u202egpj.exe`},             // bidi override
		{"a\u200bb\u2028c\u00a0d", `a\u200bb\u2028c\u00a0d`}, // zero width, line separator, no-break space
		{"\U000e0001tag", `\U000e0001tag`},
		{"bad\xff\xfe", `bad\xff\xfe`},
	} {
		got := Escape(tc.in)
		if got != tc.want {
			t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if c := controls(got); c != "" {
			t.Errorf("Escape(%q) = %q still holds %q", tc.in, got, c)
		}
		if again := Escape(got); again != got {
			t.Errorf("Escape of %q's escape changed it again: %q", tc.in, again)
		}
	}
}

func TestClipCutsOnACharacterBoundaryAndSaysSo(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"a longer text", 10, "a longe..."},
		{"ääääää", 8, "ää..."}, // 12 bytes; the cut would split the third ä
		{"abcdef", 2, ".."},
	} {
		got := Clip(tc.in, tc.max)
		if got != tc.want || len(got) > tc.max || !utf8.ValidString(got) {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

func TestFieldIsEscapedAndBoundedHoweverLongTheInput(t *testing.T) {
	for _, in := range []string{
		"/tmp/" + strings.Repeat("A", 256<<10),
		strings.Repeat("\x1b", 300<<10),
		strings.Repeat("ä", 100<<10),
		strings.Repeat("\u202e", 1000),
		strings.Repeat("a", 510) + "\xff",
	} {
		got := Field(in, 512)
		if len(got) > 512 || !strings.HasSuffix(got, Ellipsis) || controls(got) != "" {
			t.Errorf("Field of %d bytes beginning %q: %d bytes %q, want at most 512, escaped, ending in %q", len(in), in[:8], len(got), got[:min(len(got), 40)], Ellipsis)
		}
		if want := Clip(Escape(in), 512); got != want {
			t.Errorf("Field of %d bytes beginning %q = %q, want Clip(Escape(...)) = %q", len(in), in[:8], got, want)
		}
	}
	if got := Field("tina", 512); got != "tina" {
		t.Errorf("Field(tina) = %q", got)
	}
}

func TestValidUserNameIsTheCoordinatorsRule(t *testing.T) {
	for name, want := range map[string]bool{
		"tina": true, "tom.b": true, "a_b-c": true, "0day": true, strings.Repeat("a", 64): true,
		"": false, "Tom": false, "tom ": false, " tom": false, "tom\t": false, "TOM": false, ".tom": false,
		"local:tom": false, "tóm": false, strings.Repeat("a", 65): false,
	} {
		if got := ValidUserName(name); got != want {
			t.Errorf("ValidUserName(%q) = %v, want %v", name, got, want)
		}
	}
}
