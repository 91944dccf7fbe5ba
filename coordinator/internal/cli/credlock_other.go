//go:build !unix

package cli

import "context"

// lockSignIn takes no lock where flock(2) is missing: commands that
// refresh at the same moment may spend the refresh token twice.
func lockSignIn(context.Context, string) (func(), error) { return func() {}, nil }
