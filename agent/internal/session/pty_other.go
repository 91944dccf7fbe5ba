//go:build !unix

package session

import (
	"context"
	"io"

	"github.com/outposthq/outpost/pkg/wire"
)

// runTerminal falls back to pipes where there are no pseudo-terminals.
func runTerminal(ctx context.Context, argv, env []string, _ *wire.Terminal, in io.Reader, o *out) (int32, error) {
	return runCommand(ctx, argv, env, in, o)
}
