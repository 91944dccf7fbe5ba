package policy

import "gopkg.in/yaml.v3"

// Defaults reads the window and reboot policy of a policy's top-level
// defaults section, for items added beside the compiled ones (approved
// patches). src is a policy that compiled; anything else has none.
func Defaults(src []byte) (window, reboot string) {
	var doc struct {
		Defaults struct {
			Window string `yaml:"window"`
			Reboot string `yaml:"reboot"`
		} `yaml:"defaults"`
	}
	if len(src) > MaxSize || yaml.Unmarshal(src, &doc) != nil {
		return "", ""
	}
	if CheckWindow(doc.Defaults.Window) != "" {
		doc.Defaults.Window = ""
	}
	switch doc.Defaults.Reboot {
	case "never", "if-needed-inside-window", "notify-only":
	default:
		doc.Defaults.Reboot = ""
	}
	return doc.Defaults.Window, doc.Defaults.Reboot
}
