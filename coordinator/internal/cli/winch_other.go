//go:build !unix

package cli

import (
	"os"

	"github.com/outposthq/outpost/pkg/wire"
)

// watchResize does nothing where terminals send no resize signal.
func watchResize(*os.File, func(*wire.WindowSize)) (stop func()) { return func() {} }
