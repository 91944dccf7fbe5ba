// Command outpost-plugin-package is the package plugin. The agent starts it;
// run by hand it says so and exits. $OUTPOST_HOOK_TIMEOUT (a duration such
// as 2m) bounds each pre- and post-install hook.
package main

import (
	"github.com/outposthq/outpost/plugins"
	"github.com/outposthq/outpost/plugins/packages"
)

func main() {
	plugins.Serve(packages.New(plugins.Logger(), packages.WithHookTimeout(packages.HookTimeoutFromEnv())))
}
