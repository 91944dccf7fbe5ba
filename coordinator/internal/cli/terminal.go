package cli

import (
	"io"
	"os"

	"golang.org/x/term"

	"github.com/outposthq/outpost/pkg/wire"
)

// localTerminal is the terminal `outpost connect` runs in, if it runs in
// one: both its input and its output must be the terminal.
func localTerminal(stdin io.Reader, stdout io.Writer) (*os.File, bool) {
	in, ok := stdin.(*os.File)
	if !ok || !term.IsTerminal(int(in.Fd())) {
		return nil, false
	}
	if out, ok := stdout.(*os.File); !ok || !term.IsTerminal(int(out.Fd())) {
		return nil, false
	}
	return in, true
}

// terminalSize is the local terminal's size, 24×80 when it cannot be read.
func terminalSize(f *os.File) *wire.WindowSize {
	cols, rows, err := term.GetSize(int(f.Fd()))
	if err != nil || rows <= 0 || cols <= 0 {
		return &wire.WindowSize{Rows: 24, Cols: 80}
	}
	return &wire.WindowSize{Rows: uint32(rows), Cols: uint32(cols)}
}

// rawTerminal puts the local terminal in raw mode — every key, Ctrl-C
// included, goes to the host — and returns what puts it back.
func rawTerminal(f *os.File) (restore func(), err error) {
	st, err := term.MakeRaw(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	return func() { _ = term.Restore(int(f.Fd()), st) }, nil
}
