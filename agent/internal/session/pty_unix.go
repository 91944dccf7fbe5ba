//go:build unix

package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"time"

	"github.com/creack/pty"

	"github.com/outposthq/outpost/pkg/wire"
)

// runTerminal runs argv on a new pseudo-terminal of the technician's size:
// line editing, job control and full-screen programs work. Everything the
// terminal prints goes out as stdout; the technician's keystrokes come in as
// stdin and size changes as resize. Ending ctx kills the terminal's session.
func runTerminal(ctx context.Context, argv, env []string, t *wire.Terminal, in io.Reader, o *out) (int32, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	cmd, err := command(ctx, argv, setEnv(slices.Clone(env), "TERM", termName(t.GetTerm())))
	if err != nil {
		return startStatus(err), fmt.Errorf("start %s on a terminal: %w", argv[0], err)
	}
	// pty.Start makes the shell a session leader, so its pid is its
	// session: kill the session, not just the shell (nor only its process
	// group: each job of an interactive shell has a group of its own).
	cmd.Cancel = func() error { return killSession(cmd.Process.Pid) }
	ptmx, err := pty.StartWithSize(cmd, winsize(t.GetSize()))
	if err != nil {
		// A status as a shell gives it, as over pipes: 127 not found.
		return startStatus(err), fmt.Errorf("start %s on a terminal: %w", argv[0], err)
	}
	defer ptmx.Close()
	go pumpInput(in, ptmx, func(ws *wire.WindowSize) { _ = pty.Setsize(ptmx, winsize(ws)) }, func() bool {
		// The technician's input ended: end-of-file, as Ctrl-D would.
		_, _ = ptmx.Write([]byte{4})
		return true
	}, func() { cancel(errTechnicianGone) })
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		buf := make([]byte, chunk)
		w := streamWriter{o: o}
		for {
			n, err := ptmx.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil { // EIO once the terminal's last process is gone
				return
			}
		}
	}()
	err = cmd.Wait()
	// Let the last output drain; a background child holding the terminal
	// open must not hold the session. A session cut short drains nothing:
	// what it has left to write is why it was cut (cutWriteGrace).
	select {
	case <-copied:
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
	if ctx.Err() != nil {
		return -1, context.Cause(ctx)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return exitStatus(ee.ProcessState), nil
	}
	if err != nil {
		return -1, err
	}
	return exitStatus(cmd.ProcessState), nil
}

func winsize(s *wire.WindowSize) *pty.Winsize {
	rows, cols := clampCells(s.GetRows(), 24), clampCells(s.GetCols(), 80)
	return &pty.Winsize{Rows: rows, Cols: cols}
}
