package policy

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/outposthq/outpost/pkg/wire"
)

var (
	registryFields = []string{"kind", "path", "format", "section", "name", "type", "value", "values", "action", "state", "window", "reboot"}
	patchFields    = []string{"kind", "id", "state", "window", "reboot"}
	defaultFields  = []string{"window", "reboot"}

	registryTypes   = []string{"string", "dword", "qword", "multi_string"}
	registryActions = []string{"set", "delete_value", "delete_key"}
	registryFormats = []string{"keyvalue", "ini"}
	rebootPolicies  = []string{"never", "if-needed-inside-window", "notify-only"}

	windowRE  = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])$`)
	patchIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	hiveRE    = regexp.MustCompile(`^(?i:HKLM|HKEY_LOCAL_MACHINE|HKCU|HKEY_CURRENT_USER|HKU|HKEY_USERS|HKCR|HKEY_CLASSES_ROOT|HKCC|HKEY_CURRENT_CONFIG)\\`)
)

// PatchLookup finds a patch in the coordinator's catalog. The artifact
// lookup passed to Compile may implement it; without it, patch items are
// refused.
type PatchLookup interface {
	Patch(id string) (spec *wire.PatchSpec, artifactSHA256 string, ok bool, err error)
}

// CheckWindow validates a deployment window, "HH:MM-HH:MM".
func CheckWindow(s string) string {
	m := windowRE.FindStringSubmatch(s)
	if m == nil {
		return fmt.Sprintf("window %q is not HH:MM-HH:MM in 24-hour time; write for example 22:00-04:00", truncate(s, 40))
	}
	if m[1] == m[3] && m[2] == m[4] {
		return fmt.Sprintf("window %q starts where it ends; write 00:00-23:59 for all day, or leave window out", s)
	}
	return ""
}

// schedule reads the fields every kind shares: window and reboot.
func (c *compiler) schedule(fields map[string]*yaml.Node, item *wire.Item) {
	if v, ok := fields["window"]; ok {
		if s, ok := c.str(v, "window"); ok {
			if msg := CheckWindow(s); msg != "" {
				c.problem(v, "%s", msg)
			} else {
				item.Window = s
			}
		}
	}
	if v, ok := fields["reboot"]; ok {
		if s, ok := c.str(v, "reboot"); ok {
			if !contains(rebootPolicies, s) {
				c.problem(v, "reboot %q is not valid%s", s, suggest(s, rebootPolicies, "reboot policies"))
			} else {
				item.Reboot = s
			}
		}
	}
}

func (c *compiler) state(fields map[string]*yaml.Node, item *wire.Item) {
	item.State = wire.State_STATE_PRESENT
	if v, ok := fields["state"]; ok {
		if s, ok := c.str(v, "state"); ok {
			switch s {
			case "present":
			case "absent":
				item.State = wire.State_STATE_ABSENT
			default:
				c.problem(v, "state %q is not valid; use present or absent", s)
			}
		}
	}
}

func (c *compiler) oneOf(fields map[string]*yaml.Node, name string, valid []string, def string) string {
	v, ok := fields[name]
	if !ok {
		return def
	}
	s, ok := c.str(v, name)
	if !ok {
		return def
	}
	if !contains(valid, s) {
		c.problem(v, "%s %q is not valid%s", name, truncate(s, 40), suggest(s, valid, name+"s"))
		return def
	}
	return s
}

// registryItem compiles a registry value or settings-file item. Its id
// names what it touches, so two items cannot fight over one value.
func (c *compiler) registryItem(n *yaml.Node, before int) (*wire.Item, error) {
	fields := c.fields(n, "item", registryFields)
	item := &wire.Item{Kind: KindRegistry}
	spec := &wire.RegistrySpec{}
	c.state(fields, item)
	c.schedule(fields, item)

	winKey := false
	if v, ok := fields["path"]; !ok {
		c.problem(n, "the item has no path; add path: /etc/sysctl.d/99-outpost.conf (a settings file) or HKLM\\SOFTWARE\\Vendor (a registry key)")
	} else if s, ok := c.str(v, "path"); ok {
		winKey = hiveRE.MatchString(s)
		if msg := checkSettingsPath(s, winKey); msg != "" {
			c.problem(v, "%s", msg)
		} else {
			spec.Path = s
		}
	}
	spec.Action = c.oneOf(fields, "action", registryActions, "set")
	spec.Type = c.oneOf(fields, "type", registryTypes, "string")
	if !winKey {
		spec.Format = c.oneOf(fields, "format", registryFormats, "keyvalue")
	} else if v, ok := fields["format"]; ok {
		c.problem(v, "a registry key has no format; format is for settings files")
	}
	if v, ok := fields["section"]; ok {
		if s, ok := c.str(v, "section"); ok {
			switch {
			case spec.Format != "ini":
				c.problem(v, "section is only for ini files; add format: ini or remove section")
			case s == "" || strings.ContainsAny(s, "[]\n\r") || strings.TrimSpace(s) != s:
				c.problem(v, "section %q is not a valid ini section name", truncate(s, 40))
			default:
				spec.Section = s
			}
		}
	}
	if v, ok := fields["name"]; ok {
		if s, ok := c.str(v, "name"); ok {
			switch {
			case spec.Action == "delete_key":
				c.problem(v, "delete_key removes the whole key or section; remove name")
			case s == "" || strings.ContainsAny(s, "=[]#;\n\r") || strings.TrimSpace(s) != s:
				c.problem(v, "name %q is not a valid setting name (no = [ ] # ; or outer spaces)", truncate(s, 40))
			default:
				spec.Name = s
			}
		}
	} else if spec.Action != "delete_key" {
		c.problem(n, "the item has no name; add name: <the value or setting to manage>")
	}
	value, hasValue := fields["value"]
	values, hasValues := fields["values"]
	switch {
	case spec.Action != "set" && (hasValue || hasValues):
		at := value
		if at == nil {
			at = values
		}
		c.problem(at, "action %s takes no value; remove it", spec.Action)
	case spec.Action != "set" || item.State == wire.State_STATE_ABSENT && !hasValue && !hasValues:
	case spec.Type == "multi_string":
		if hasValue {
			c.problem(value, "a multi_string takes values: a list of strings")
		} else if !hasValues {
			c.problem(n, "the item has no values; add values: [a, b]")
		} else if values.Kind != yaml.SequenceNode {
			c.problem(values, "values must be a list of strings, not %s", describe(values))
		} else {
			for _, e := range values.Content {
				if s, ok := c.str(e, "each of values"); ok {
					spec.Data = append(spec.Data, s)
				}
			}
		}
	default:
		if hasValues {
			c.problem(values, "a %s takes one value; write value: ...", spec.Type)
		} else if !hasValue {
			c.problem(n, "the item has no value; add value: <what to set>")
		} else if s, ok := c.str(value, "value"); ok {
			if msg := checkRegistryValue(spec.Type, s); msg != "" {
				c.problem(value, "%s", msg)
			} else {
				spec.Data = []string{s}
			}
		}
	}
	if len(c.problems) > before {
		return nil, nil
	}
	// A path may hold the characters that set off a section and a name
	// in the id: escaped, two settings never share one.
	id := KindRegistry + ":" + idPathEscaper.Replace(spec.Path)
	if spec.Section != "" {
		id += "[" + spec.Section + "]"
	}
	if spec.Name != "" {
		id += "#" + spec.Name
	}
	item.Id = id
	item.Spec = &wire.Item_Registry{Registry: spec}
	return item, nil
}

var idPathEscaper = strings.NewReplacer("%", "%25", "[", "%5B", "]", "%5D", "#", "%23")

// hiveNames are the short names of registry hives by their long ones.
var hiveNames = map[string]string{
	"HKEY_LOCAL_MACHINE": "HKLM", "HKEY_CURRENT_USER": "HKCU", "HKEY_USERS": "HKU",
	"HKEY_CLASSES_ROOT": "HKCR", "HKEY_CURRENT_CONFIG": "HKCC",
}

// itemKey is what two items must differ in to manage different things:
// the id, but for a Windows registry value, whose key and name are the
// same in any case and whose hive has two names.
func itemKey(it *wire.Item) string {
	r := it.GetRegistry()
	if r == nil || !hiveRE.MatchString(r.GetPath()) {
		return it.GetId()
	}
	hive, rest, _ := strings.Cut(r.GetPath(), `\`)
	hive = strings.ToUpper(hive)
	if short, ok := hiveNames[hive]; ok {
		hive = short
	}
	return strings.ToLower(KindRegistry + ":" + hive + `\` + idPathEscaper.Replace(rest) + "#" + r.GetName())
}

func checkSettingsPath(s string, winKey bool) string {
	switch {
	case len(s) > maxPrefixLen:
		return fmt.Sprintf("path is %d characters long; the limit is %d", len(s), maxPrefixLen)
	case strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return fmt.Sprintf("path %q has control characters", s)
	case winKey:
		if strings.Contains(s, `\\`) || strings.HasSuffix(s, `\`) || strings.Contains(s, "/") {
			return fmt.Sprintf("registry key %q is malformed; write it as HKLM\\SOFTWARE\\Vendor\\App", s)
		}
		return ""
	case !strings.HasPrefix(s, "/"):
		return fmt.Sprintf("path %q is neither an absolute settings-file path nor a registry key (HKLM\\...)", truncate(s, 80))
	case hasDotDot(s):
		return fmt.Sprintf("path %q has a .. element; the registry plugin refuses paths that climb", s)
	case strings.Contains(s, "\\") || s == "/" || strings.HasSuffix(s, "/"):
		return fmt.Sprintf("path %q is not a settings file path", s)
	case !isCleanPath(s):
		return fmt.Sprintf("path %q is not a clean path", s)
	}
	return ""
}

func isCleanPath(s string) bool {
	return !strings.Contains(s, "//") && !strings.Contains(s, "/./") && !strings.HasSuffix(s, "/.")
}

func checkRegistryValue(typ, s string) string {
	switch typ {
	case "dword", "qword":
		bits := 32
		if typ == "qword" {
			bits = 64
		}
		t, base := s, 10
		if strings.HasPrefix(t, "0x") || strings.HasPrefix(t, "0X") {
			t, base = t[2:], 16
		}
		if _, err := strconv.ParseUint(t, base, bits); err != nil {
			return fmt.Sprintf("value %q is not a %s (an unsigned %d-bit number)", truncate(s, 40), typ, bits)
		}
	default:
		if strings.ContainsAny(s, "\n\r\x00") {
			return "value has a line break; a string value is one line"
		}
	}
	return ""
}

// patchItem compiles a patch item by its catalog id: the catalog gives
// the affected package, the fixed version and the artifact.
func (c *compiler) patchItem(n *yaml.Node, before int) (*wire.Item, error) {
	fields := c.fields(n, "item", patchFields)
	item := &wire.Item{Kind: KindPatch}
	c.state(fields, item)
	c.schedule(fields, item)
	v, ok := fields["id"]
	if !ok {
		c.problem(n, "the item has no id; add id: <patch id from outpost patch list>")
		return nil, nil
	}
	id, ok := c.str(v, "id")
	if !ok {
		return nil, nil
	}
	if !patchIDRE.MatchString(id) {
		c.problem(v, "patch id %q is not valid", truncate(id, 40))
		return nil, nil
	}
	pl, ok := c.artifacts.(PatchLookup)
	if !ok {
		c.problem(v, "this coordinator has no patch catalog")
		return nil, nil
	}
	spec, sha, found, err := pl.Patch(id)
	if err != nil {
		return nil, fmt.Errorf("look up patch %s: %w", id, err)
	}
	if !found {
		c.problem(v, "patch %s is not in the catalog; import it with \"outpost patch import FEED\"", id)
		return nil, nil
	}
	if sha != "" {
		a, err := c.artifact(v, sha)
		if err != nil {
			return nil, err
		}
		item.Artifact = a
	}
	if len(c.problems) > before {
		return nil, nil
	}
	item.Id = KindPatch + "/" + id
	item.Spec = &wire.Item_Patch{Patch: spec}
	return item, nil
}

// defaults applies the policy's top-level window and reboot policy to every
// item that does not set its own:
//
//	defaults:
//	  window: 22:00-04:00
//	  reboot: if-needed-inside-window
func (c *compiler) defaults(n *yaml.Node, items []*wire.Item) {
	if n = c.deref(n); n == nil {
		return
	}
	if n.Kind != yaml.MappingNode {
		c.problem(n, "defaults must be a mapping with window and reboot, not %s", describe(n))
		return
	}
	var d wire.Item
	c.schedule(c.fields(n, "defaults", defaultFields), &d)
	for _, it := range items {
		if it.Window == "" {
			it.Window = d.Window
		}
		if it.Reboot == "" {
			it.Reboot = d.Reboot
		}
	}
}
