package registry

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"unicode"

	"github.com/outposthq/outpost/pkg/wire"
)

// Kind is the item kind this plugin manages.
const Kind = "registry"

// Value types, named as in the Windows registry.
const (
	TypeString      = "string"
	TypeDword       = "dword"
	TypeQword       = "qword"
	TypeMultiString = "multi_string"
)

// Actions an item may ask for.
const (
	ActionSet         = "set"          // the value has the wanted data
	ActionDeleteValue = "delete_value" // the value does not exist
	ActionDeleteKey   = "delete_key"   // the key (an ini section, a key=value file) does not exist
)

// multiSep joins the strings of a multi_string in a settings file.
const multiSep = ","

// spec is a validated registry item.
type spec struct {
	id      string
	path    string // a settings file (absolute within the root) or a registry key (HKLM\...)
	format  string // keyvalue or ini; empty for the registry
	section string
	name    string
	typ     string
	data    []string
	action  string
	state   wire.State
}

// target says what the item touches; two specs with the same target share
// one original value.
func (s spec) target() string {
	return strings.Join([]string{s.path, s.format, s.section, s.name, s.action}, "\x00")
}

// describe names what the item touches, for messages.
func (s spec) describe() string {
	var b strings.Builder
	if s.action == ActionDeleteKey {
		if s.section != "" {
			fmt.Fprintf(&b, "section [%s] of %s", s.section, s.path)
		} else {
			b.WriteString(s.path)
		}
		return b.String()
	}
	if s.section != "" {
		fmt.Fprintf(&b, "[%s] ", s.section)
	}
	fmt.Fprintf(&b, "%s in %s", s.name, s.path)
	return b.String()
}

// isRegistryPath reports whether p names a Windows registry key.
func isRegistryPath(p string) bool {
	root, _, _ := strings.Cut(p, `\`)
	switch strings.ToUpper(root) {
	case "HKLM", "HKEY_LOCAL_MACHINE", "HKCU", "HKEY_CURRENT_USER", "HKU", "HKEY_USERS", "HKCR", "HKEY_CLASSES_ROOT", "HKCC", "HKEY_CURRENT_CONFIG":
		return true
	}
	return false
}

// itemSpec validates a registry item.
func itemSpec(item *wire.Item) (spec, error) {
	if item == nil {
		return spec{}, fmt.Errorf("no item given")
	}
	if item.GetKind() != Kind {
		return spec{}, fmt.Errorf("item %s has kind %q; this plugin manages %q", item.GetId(), item.GetKind(), Kind)
	}
	r := item.GetRegistry()
	if r == nil {
		return spec{}, fmt.Errorf("item %s has no registry spec", item.GetId())
	}
	s := spec{id: item.GetId(), path: r.GetPath(), format: r.GetFormat(), section: r.GetSection(), name: r.GetName(),
		typ: r.GetType(), data: r.GetData(), action: r.GetAction(), state: item.GetState()}
	if s.action == "" {
		s.action = ActionSet
	}
	if s.typ == "" {
		s.typ = TypeString
	}
	switch s.state {
	case wire.State_STATE_PRESENT, wire.State_STATE_ABSENT:
	default:
		return spec{}, fmt.Errorf("item %s has state %s; want PRESENT or ABSENT", item.GetId(), s.state)
	}
	if isRegistryPath(s.path) {
		if s.format != "" || s.section != "" {
			return spec{}, fmt.Errorf("item %s: registry key %s takes no format or section", s.id, s.path)
		}
		if strings.ContainsAny(s.path, "\x00/") || strings.Contains(s.path, `\\`) || strings.HasSuffix(s.path, `\`) {
			return spec{}, fmt.Errorf("item %s: registry key %q is malformed; write it as HKLM\\SOFTWARE\\Vendor\\App", s.id, s.path)
		}
	} else {
		if s.format == "" {
			s.format = FormatKeyValue
		}
		if err := checkFilePath(s.path); err != nil {
			return spec{}, fmt.Errorf("item %s: %w", s.id, err)
		}
		switch s.format {
		case FormatKeyValue:
			if s.section != "" {
				return spec{}, fmt.Errorf("item %s: a keyvalue file has no sections; use format: ini for section %q", s.id, s.section)
			}
		case FormatINI:
			if err := checkToken("section", s.section, "[]"); err != nil && s.section != "" {
				return spec{}, fmt.Errorf("item %s: %w", s.id, err)
			}
		default:
			return spec{}, fmt.Errorf("item %s: format %q is not known; use keyvalue or ini", s.id, s.format)
		}
	}
	switch s.action {
	case ActionSet, ActionDeleteValue:
		if err := checkToken("name", s.name, "=[]#;"); err != nil {
			return spec{}, fmt.Errorf("item %s: %w", s.id, err)
		}
	case ActionDeleteKey:
		if s.name != "" {
			return spec{}, fmt.Errorf("item %s: delete_key removes the whole key; it takes no name", s.id)
		}
	default:
		return spec{}, fmt.Errorf("item %s: action %q is not known; use set, delete_value or delete_key", s.id, s.action)
	}
	if s.action == ActionSet {
		data, err := canonical(s.typ, s.data, s.format != "")
		if err != nil {
			return spec{}, fmt.Errorf("item %s: %w", s.id, err)
		}
		s.data = data
	}
	return s, nil
}

// checkFilePath accepts an absolute, clean settings-file path.
func checkFilePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("no path given; name a settings file such as /etc/sysctl.d/99-outpost.conf")
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q is not absolute; name a settings file such as /etc/sysctl.d/99-outpost.conf", p)
	case strings.ContainsAny(p, "\x00\\"):
		return fmt.Errorf("path %q has a NUL or backslash", p)
	case hasDotDot(p):
		return fmt.Errorf("path %q has a .. element; the plugin refuses paths that climb", p)
	case path.Clean(p) != p || p == "/":
		return fmt.Errorf("path %q is not a clean file path", p)
	}
	return nil
}

func hasDotDot(p string) bool {
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return true
		}
	}
	return false
}

func checkToken(what, s, bad string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", what)
	case len(s) > 256:
		return fmt.Errorf("%s is longer than 256 characters", what)
	case strings.TrimSpace(s) != s:
		return fmt.Errorf("%s %q starts or ends with a space", what, s)
	case strings.ContainsAny(s, bad) || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return fmt.Errorf("%s %q has a character a settings file cannot hold (%s or a control character)", what, s, bad)
	}
	return nil
}

// canonical checks data against typ and writes numbers in decimal, so
// that comparing text compares values. In a settings file a multi_string is
// one line, its strings joined with commas.
func canonical(typ string, data []string, file bool) ([]string, error) {
	one := func() (string, error) {
		if len(data) != 1 {
			return "", fmt.Errorf("a %s value takes exactly one value, got %d", typ, len(data))
		}
		return data[0], nil
	}
	switch typ {
	case TypeString:
		v, err := one()
		if err != nil {
			return nil, err
		}
		if strings.ContainsAny(v, "\n\r\x00") {
			return nil, fmt.Errorf("a string value cannot hold a newline or NUL")
		}
		if file && strings.TrimSpace(v) != v {
			return nil, fmt.Errorf("value %q starts or ends with a space, which a settings file does not keep", v)
		}
		return []string{v}, nil
	case TypeDword, TypeQword:
		v, err := one()
		if err != nil {
			return nil, err
		}
		bits := 32
		if typ == TypeQword {
			bits = 64
		}
		n, err := parseNumber(v, bits)
		if err != nil {
			return nil, err
		}
		return []string{strconv.FormatUint(n, 10)}, nil
	case TypeMultiString:
		for _, v := range data {
			if strings.ContainsAny(v, "\n\r\x00") || (file && (strings.Contains(v, multiSep) || strings.TrimSpace(v) != v)) {
				return nil, fmt.Errorf("multi_string element %q cannot be kept: no newline, NUL, comma or outer spaces", v)
			}
		}
		return append([]string(nil), data...), nil
	}
	return nil, fmt.Errorf("type %q is not known; use string, dword, qword or multi_string", typ)
}

func parseNumber(v string, bits int) (uint64, error) {
	s := strings.TrimSpace(v)
	base := 10
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		s, base = s[2:], 16
	}
	n, err := strconv.ParseUint(s, base, bits)
	if err != nil {
		return 0, fmt.Errorf("%q is not a %d-bit unsigned number", v, bits)
	}
	return n, nil
}

// equalValue compares what a settings file holds with the wanted data.
func equalValue(typ, have string, want []string) bool {
	switch typ {
	case TypeDword, TypeQword:
		bits := 32
		if typ == TypeQword {
			bits = 64
		}
		n, err := parseNumber(have, bits)
		return err == nil && len(want) == 1 && strconv.FormatUint(n, 10) == want[0]
	case TypeMultiString:
		parts := strings.Split(have, multiSep)
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		if have == "" {
			parts = nil
		}
		return strings.Join(parts, multiSep) == strings.Join(want, multiSep)
	}
	return len(want) == 1 && have == want[0]
}

// fileValue is the text of a value in a settings file.
func fileValue(typ string, data []string) string {
	if typ == TypeMultiString {
		return strings.Join(data, multiSep)
	}
	return data[0]
}
