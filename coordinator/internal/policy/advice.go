package policy

import (
	"fmt"
	"strings"

	"github.com/outposthq/outpost/pkg/wire"
)

// RegistryDefaultAllow are the settings-file prefixes the registry plugin
// writes unless a host's OUTPOST_REGISTRY_ALLOW names others (the
// plugin's registry.DefaultAllow; e2e keeps the two equal).
var RegistryDefaultAllow = []string{"/etc/", "/opt/"}

// Advice is what a policy that compiled may still not do as meant, for
// the admin who applies it: a settings file outside the registry plugin's
// default prefixes, which hosts refuse unless configured for it.
func Advice(items []*wire.Item) []string {
	var out []string
	for _, it := range items {
		p := it.GetRegistry().GetPath()
		if p == "" || !strings.HasPrefix(p, "/") {
			continue // a Windows registry key, or no registry item
		}
		allowed := false
		for _, a := range RegistryDefaultAllow {
			allowed = allowed || strings.HasPrefix(p, a)
		}
		if !allowed {
			out = append(out, fmt.Sprintf("item %s: %s is outside %s, which the registry plugin writes by default: hosts refuse it unless their OUTPOST_REGISTRY_ALLOW names it",
				it.GetId(), p, strings.Join(RegistryDefaultAllow, " and ")))
		}
	}
	return out
}
