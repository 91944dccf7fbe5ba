// Command outpost-plugin-patch is the patch plugin. The agent starts it;
// run by hand it says so and exits.
package main

import (
	"github.com/outposthq/outpost/plugins"
	"github.com/outposthq/outpost/plugins/patch"
)

func main() {
	plugins.Serve(patch.New(plugins.Logger()))
}
