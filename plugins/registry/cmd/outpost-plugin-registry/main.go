// Command outpost-plugin-registry is the registry plugin. The agent starts
// it; run by hand it says so and exits. The prefixes settings files may
// have come from $OUTPOST_REGISTRY_ALLOW (colon-separated), /etc/ and /opt/
// by default.
package main

import (
	"github.com/outposthq/outpost/plugins"
	"github.com/outposthq/outpost/plugins/registry"
)

func main() {
	plugins.Serve(registry.New(plugins.Logger(), registry.WithAllow(registry.AllowFromEnv())))
}
