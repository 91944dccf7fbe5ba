// Command outpost-plugin-package is the package plugin. The agent starts it;
// run by hand it says so and exits.
package main

import (
	"github.com/outposthq/outpost/plugins"
	"github.com/outposthq/outpost/plugins/packages"
)

func main() {
	plugins.Serve(packages.New(plugins.Logger()))
}
