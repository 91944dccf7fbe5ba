package e2e

import (
	"slices"
	"testing"

	"github.com/outposthq/outpost/coordinator/coordinatortest"
	"github.com/outposthq/outpost/plugins/registry"
)

// The coordinator advises on settings files outside the registry plugin's
// default prefixes from its own copy of them, the parts keeping out of
// each other's code: the copies must agree.
func TestCoordinatorKnowsTheRegistryPluginsDefaultPrefixes(t *testing.T) {
	if !slices.Equal(coordinatortest.RegistryDefaultAllow(), registry.DefaultAllow) {
		t.Fatalf("the coordinator advises on %v, the registry plugin allows %v by default", coordinatortest.RegistryDefaultAllow(), registry.DefaultAllow)
	}
}
