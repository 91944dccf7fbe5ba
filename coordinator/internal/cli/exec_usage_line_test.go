package cli

import (
	"strings"
	"testing"
)

// exec's usage line puts its flags where they work: before --, since
// everything after it goes to the host's command.
func TestExecUsageLineHasFlagsBeforeTheCommand(t *testing.T) {
	res := run(t, nil, "help", "exec")
	if res.code != 0 || !strings.HasPrefix(res.stdout, "Usage: outpost exec [flags] HOST -- COMMAND [ARG...]\n") {
		t.Fatalf("help exec:\n%s", res.stdout)
	}
	res = run(t, nil, "exec", "pc-7")
	if res.code != 2 || !strings.Contains(res.stderr, "Usage: outpost exec [flags] HOST -- COMMAND [ARG...]\n") {
		t.Fatalf("exec with no command: %+v", res)
	}
	// Other commands keep [flags] last, where they work too.
	if res := run(t, nil, "help", "office", "add"); !strings.HasPrefix(res.stdout, "Usage: outpost office add NAME [flags]\n") {
		t.Fatalf("help office add:\n%s", res.stdout)
	}
}
