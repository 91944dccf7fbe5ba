package registry

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Settings file formats.
const (
	FormatKeyValue = "keyvalue" // key = value lines, as in /etc/sysctl.d/*.conf
	FormatINI      = "ini"      // [section] headers over key = value lines
)

// MaxSettingsFile bounds the settings files the plugin reads: they are
// configuration, and anything larger is not one to edit line by line.
const MaxSettingsFile = 1 << 20

// settingsLine is one line of a settings file. Lines the plugin does not
// change are written back exactly as they were read.
type settingsLine struct {
	raw     string
	section string // the section the line is in; "" before any header
	header  bool   // a [section] line
	key     string // set for key = value lines
	value   string
}

// settingsDoc is a parsed settings file.
type settingsDoc struct {
	format string
	lines  []settingsLine
}

// parseSettings reads a settings file. Unknown lines (comments, sysctl's
// "-key" lines, anything without '=') are kept as they are; only what the
// plugin cannot write back faithfully is refused.
func parseSettings(data []byte, format string) (*settingsDoc, error) {
	if len(data) > MaxSettingsFile {
		return nil, fmt.Errorf("the file is %d bytes, more than the %d a settings file may have", len(data), MaxSettingsFile)
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("the file is not UTF-8 text")
	}
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, fmt.Errorf("the file has NUL bytes; it is not a text settings file")
	}
	d := &settingsDoc{format: format}
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	text = strings.TrimSuffix(text, "\n")
	if text == "" {
		return d, nil
	}
	section := ""
	for i, raw := range strings.Split(text, "\n") {
		l := settingsLine{raw: raw, section: section}
		t := strings.TrimSpace(raw)
		switch {
		case t == "" || t[0] == '#' || t[0] == ';':
		case format == FormatINI && t[0] == '[':
			if !strings.HasSuffix(t, "]") || len(t) < 2 {
				return nil, fmt.Errorf("line %d: section header %q has no closing ]", i+1, truncate(t, 40))
			}
			section = strings.TrimSpace(t[1 : len(t)-1])
			l.section, l.header = section, true
		default:
			if k, v, ok := strings.Cut(t, "="); ok {
				l.key, l.value = strings.TrimSpace(k), strings.TrimSpace(v)
			}
		}
		d.lines = append(d.lines, l)
	}
	return d, nil
}

// bytes renders the document, every line ending in a newline.
func (d *settingsDoc) bytes() []byte {
	var b bytes.Buffer
	for _, l := range d.lines {
		b.WriteString(l.raw)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// empty reports whether the document has nothing but blank lines.
func (d *settingsDoc) empty() bool {
	for _, l := range d.lines {
		if strings.TrimSpace(l.raw) != "" {
			return false
		}
	}
	return true
}

// get returns the value of key in section; like sysctl, the last one wins.
func (d *settingsDoc) get(section, key string) (string, bool) {
	val, ok := "", false
	for _, l := range d.lines {
		if !l.header && l.key == key && l.section == section && l.key != "" {
			val, ok = l.value, true
		}
	}
	return val, ok
}

func kvLine(section, key, value string) settingsLine {
	return settingsLine{raw: key + " = " + value, section: section, key: key, value: value}
}

// set makes key = value the one setting of key in section: the first
// occurrence is rewritten, later ones dropped; a missing key goes at the
// end of its section, a missing section at the end of the file.
func (d *settingsDoc) set(section, key, value string) {
	out := d.lines[:0:0]
	done := false
	for _, l := range d.lines {
		if !l.header && l.key == key && l.section == section {
			if !done {
				out = append(out, kvLine(section, key, value))
				done = true
			}
			continue
		}
		out = append(out, l)
	}
	d.lines = out
	if done {
		return
	}
	last, hasSection := -1, section == ""
	for i, l := range d.lines {
		if l.section == section {
			if l.header {
				hasSection = true
			}
			if l.header || strings.TrimSpace(l.raw) != "" {
				last = i
			}
		}
	}
	if !hasSection {
		if len(d.lines) > 0 && strings.TrimSpace(d.lines[len(d.lines)-1].raw) != "" {
			d.lines = append(d.lines, settingsLine{raw: ""})
		}
		d.lines = append(d.lines, settingsLine{raw: "[" + section + "]", section: section, header: true}, kvLine(section, key, value))
		return
	}
	if section == "" && last == -1 {
		// Keys outside any section go before the first header.
		last = -1
		for i, l := range d.lines {
			if l.header {
				break
			}
			last = i
		}
	}
	d.lines = append(d.lines[:last+1], append([]settingsLine{kvLine(section, key, value)}, d.lines[last+1:]...)...)
}

// del removes every setting of key in section; it reports whether any was.
func (d *settingsDoc) del(section, key string) bool {
	out := d.lines[:0:0]
	found := false
	for _, l := range d.lines {
		if !l.header && l.key == key && l.section == section {
			found = true
			continue
		}
		out = append(out, l)
	}
	d.lines = out
	return found
}

// hasSection reports whether an ini file has the section header.
func (d *settingsDoc) hasSection(section string) bool {
	for _, l := range d.lines {
		if l.header && l.section == section {
			return true
		}
	}
	return false
}

// sectionLines returns the raw lines of a section, header included, so
// that a deleted section can be put back as it was.
func (d *settingsDoc) sectionLines(section string) []string {
	var out []string
	for _, l := range d.lines {
		if l.section == section && (l.header || len(out) > 0) {
			out = append(out, l.raw)
		}
	}
	return out
}

// deleteSection removes a section, header and lines.
func (d *settingsDoc) deleteSection(section string) bool {
	out := d.lines[:0:0]
	found := false
	for _, l := range d.lines {
		if l.section == section && section != "" {
			found = true
			continue
		}
		out = append(out, l)
	}
	d.lines = out
	return found
}

// appendRaw appends lines (a saved section) and reparses, so that their
// keys and sections are known again.
func (d *settingsDoc) appendRaw(lines []string) error {
	var b bytes.Buffer
	b.Write(d.bytes())
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	nd, err := parseSettings(b.Bytes(), d.format)
	if err != nil {
		return err
	}
	*d = *nd
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
