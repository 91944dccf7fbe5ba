//go:build !linux

package agent

import "os"

// runningImage is unknown here: the executable as it was at start stands
// in for it.
func runningImage() os.FileInfo { return nil }
