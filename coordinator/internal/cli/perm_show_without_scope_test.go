package cli

import "testing"

// perm show without a scope names every way to give one, --user too.
func TestPermShowWithoutScopeNamesUser(t *testing.T) {
	want{code: 2, stderrHas: []string{"outpost: perm show: give --office NAME, --host ID or --user NAME\n"}}.check(t, run(t, nil, "perm", "show"))
	// perm set takes no --user: its message stays as it was.
	want{code: 2, stderrHas: []string{"outpost: perm set: give --office NAME or --host ID\n"}}.check(t, run(t, nil, "perm", "set", "user:tina=view"))
}
