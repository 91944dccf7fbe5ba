//go:build unix

package cli

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/outposthq/outpost/pkg/wire"
)

// watchResize calls f with the terminal's new size each time it changes,
// until the returned stop is called.
func watchResize(t *os.File, f func(*wire.WindowSize)) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				f(terminalSize(t))
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}
