// Package outpost is the root of the Outpost module. It holds no code; its
// test checks the import boundaries between the parts (agent, coordinator,
// relay, plugins, pkg).
package outpost
