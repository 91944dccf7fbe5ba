package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

const chunk = 32 << 10

// streamWriter turns writes into output frames of one kind.
type streamWriter struct {
	o      *out
	stderr bool
}

func (w streamWriter) Write(p []byte) (int, error) {
	b := append([]byte(nil), p...)
	m := &wire.SessionOutput{Body: &wire.SessionOutput_Stdout{Stdout: b}}
	if w.stderr {
		m = &wire.SessionOutput{Body: &wire.SessionOutput_Stderr{Stderr: b}}
	}
	if err := w.o.send(m); err != nil {
		return 0, err
	}
	return len(p), nil
}

// errTechnicianGone ends a session whose technician's stream ended: the
// CLI was interrupted, lost its network, or the coordinator between went
// away. Nothing is left running for nobody.
var errTechnicianGone = errors.New("the technician's connection ended")

// pumpInput passes the technician's input on until the stream ends:
// keystrokes to w, terminal sizes to resize (if any), and the end of input
// to closed, which says whether to go on passing input (a terminal wants
// an end-of-file character, pipes are closed). It keeps reading after
// that, and calls gone when the stream ends while the session runs: the
// technician does not close it before the session's end.
func pumpInput(in io.Reader, w io.Writer, resize func(*wire.WindowSize), closed func() bool, gone func()) {
	passing := true
	for {
		var m wire.SessionInput
		if err := wire.ReadMsg(in, &m); err != nil {
			gone()
			return
		}
		switch b := m.GetBody().(type) {
		case *wire.SessionInput_Stdin:
			if passing {
				if _, err := w.Write(b.Stdin); err != nil {
					passing = false // the program closed its input; keep watching the stream
				}
			}
		case *wire.SessionInput_Resize:
			if resize != nil {
				resize(b.Resize)
			}
		case *wire.SessionInput_CloseStdin:
			if passing {
				passing = closed()
			}
		}
	}
}

// runCommand runs argv with the technician's input as its standard input
// and streams its output. Ending ctx kills its whole process group.
func runCommand(ctx context.Context, argv, env []string, in io.Reader, o *out) (int32, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	cmd, err := command(ctx, argv, env)
	if err != nil {
		return startStatus(err), fmt.Errorf("start %s: %w", argv[0], err)
	}
	cmd.Stdout = streamWriter{o: o}
	cmd.Stderr = streamWriter{o: o, stderr: true}
	// Descendants that keep the pipes open must not hold the session.
	cmd.WaitDelay = 500 * time.Millisecond
	killGroup(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return -1, err
	}
	if err := cmd.Start(); err != nil {
		return startStatus(err), fmt.Errorf("start %s: %w", argv[0], err)
	}
	go func() {
		defer stdin.Close()
		pumpInput(in, stdin, nil, func() bool { stdin.Close(); return false }, func() { cancel(errTechnicianGone) })
	}()
	err = cmd.Wait()
	if ctx.Err() != nil {
		return -1, context.Cause(ctx)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return exitStatus(ee.ProcessState), nil
	}
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		return -1, err
	}
	return exitStatus(cmd.ProcessState), nil
}

// command is the command for argv, its program looked up on the PATH of
// env, the session's, not on the agent's own: a service manager may start
// the agent with none, and the session's PATH is the one the technician's
// command line is written for. The program still sees argv[0] as given.
func command(ctx context.Context, argv, env []string) (*exec.Cmd, error) {
	path, err := lookPath(argv[0], env)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Env = env
	return cmd, nil
}

// exitStatus is a finished process's status as a shell reports it: its
// exit code, or 128 plus the signal that killed it (143 for TERM).
func exitStatus(ps *os.ProcessState) int32 {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int32(ws.Signal())
	}
	return int32(ps.ExitCode())
}

// startStatus is a shell's status for a command that could not start:
// 127 not found, 126 not executable.
func startStatus(err error) int32 {
	switch {
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return 127
	case errors.Is(err, fs.ErrPermission):
		return 126
	}
	return -1
}

func checkPath(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("path %q: want an absolute path on the host", path)
	}
	return nil
}

// getFile streams a file of the host to the technician.
func getFile(ctx context.Context, path string, o *out) (int32, error) {
	if err := checkPath(path); err != nil {
		return -1, err
	}
	// Looked at before it is opened: opening a named pipe would wait for
	// a writer, and a device (/dev/zero) never ends.
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return -1, fmt.Errorf("%s is a directory on the host; copy files one at a time", path)
	} else if err == nil && !st.Mode().IsRegular() {
		return -1, fmt.Errorf("%s is not a regular file on the host (%s); copy regular files only", path, fileKind(st.Mode()))
	}
	// What is opened is judged again: the path may name something else by
	// now (a link turned by whoever owns it). Without waiting: a named
	// pipe swapped in would hold the open for a writer, past any cut.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s on the host: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	switch {
	case err != nil:
		return -1, fmt.Errorf("open %s on the host: %w", path, err)
	case st.IsDir():
		return -1, fmt.Errorf("%s is a directory on the host; copy files one at a time", path)
	case !st.Mode().IsRegular():
		return -1, fmt.Errorf("%s is not a regular file on the host (%s); copy regular files only", path, fileKind(st.Mode()))
	}
	info := &wire.FileInfo{Mode: uint32(st.Mode().Perm()), Size: st.Size()}
	if err := o.send(&wire.SessionOutput{Body: &wire.SessionOutput_FileInfo{FileInfo: info}}); err != nil {
		return -1, err
	}
	buf := make([]byte, chunk)
	for {
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		n, err := f.Read(buf)
		if n > 0 {
			if err := o.send(&wire.SessionOutput{Body: &wire.SessionOutput_FileData{FileData: append([]byte(nil), buf[:n]...)}}); err != nil {
				return -1, err
			}
		}
		if errors.Is(err, io.EOF) {
			return 0, o.send(&wire.SessionOutput{Body: &wire.SessionOutput_FileEnd{FileEnd: true}})
		}
		if err != nil {
			return -1, fmt.Errorf("read %s on the host: %w", path, err)
		}
	}
}

// bareName says whether name is a file name alone, fit to join to a
// directory: not empty, not . or .., no separator.
func bareName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, `/\`) && name == filepath.Base(name)
}

// putTarget is where a put writes: path, or, when path names a directory
// (it ends in a slash or is one), name inside it, as cp and scp do. A link
// to a directory is followed only when the path ends in a slash: the agent
// runs as root, and a link someone planted at the path must not send the
// technician's file elsewhere unasked. It refuses, before a byte of the
// file is read, a destination the file could never be renamed to, so that
// a doomed transfer fails at once rather than after the whole file has
// crossed the network.
func putTarget(path, name string) (string, error) {
	if err := checkPath(path); err != nil {
		return "", err
	}
	st, statErr := os.Lstat(path)
	if statErr == nil && st.Mode()&os.ModeSymlink != 0 && !strings.HasSuffix(path, "/") {
		if to, err := os.Stat(path); err == nil && to.IsDir() {
			return "", fmt.Errorf("put %s: it is a link to a directory on the host: end the path with / to put the file into the directory it points to, or give the whole destination path", path)
		}
	}
	if strings.HasSuffix(path, "/") || (statErr == nil && st.IsDir()) {
		if !bareName(name) {
			return "", fmt.Errorf("put %s: it names a directory on the host and no usable file name came with it (%q): give the whole destination path, e.g. HOST:%s", path, name, filepath.Join(path, "NAME"))
		}
		path = filepath.Join(path, name)
		if st, err := os.Stat(path); err == nil && st.IsDir() {
			return "", fmt.Errorf("put %s: it is a directory on the host: give the whole destination path", path)
		}
	}
	// The file is renamed over what is there: a named pipe, a socket or
	// a device node (/dev/null) a service uses would be gone, and the
	// host broken for it. cp would write into it instead; a copy that
	// writes whole files only refuses. A link is replaced, not followed.
	if st, err := os.Lstat(path); err == nil && !st.Mode().IsRegular() && st.Mode()&fs.ModeSymlink == 0 && !st.IsDir() {
		return "", notRegular(path, st.Mode())
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("put %s: the directory %s does not exist on the host: create it first (outpost exec HOST -- mkdir -p %s) or choose another destination", path, dir, dir)
	case err != nil:
		return "", fmt.Errorf("put %s: check the directory %s on the host: %w", path, dir, err)
	case !st.IsDir():
		return "", fmt.Errorf("put %s: %s is not a directory on the host", path, dir)
	}
	return path, nil
}

// putFile writes the technician's file (named name on their side) to path,
// or into it if it is a directory; it appears whole or not at all.
func putFile(ctx context.Context, path, name string, mode uint32, in io.Reader, received *int64) (int32, error) {
	path, err := putTarget(path, name)
	if err != nil {
		return -1, err
	}
	if mode == 0 {
		mode = 0o644
	}
	// Permission bits only: a copy never makes a set-id or sticky file
	// (the agent writes as root). A new file is created with them, so
	// that the kernel takes the host's umask (and a directory's default
	// ACL) away, as cp and scp do: a file that is 0666 on the
	// technician's laptop does not become one anyone may change before
	// root runs it. A file that is replaced keeps its own mode instead
	// (below), so its stand-in is private until then.
	perm := os.FileMode(mode) & os.ModePerm
	if old, err := os.Lstat(path); err == nil && old.Mode().IsRegular() {
		perm = 0o600
	}
	tmp, err := createTemp(filepath.Dir(path), perm)
	if err != nil {
		return -1, fmt.Errorf("create %s on the host: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	for {
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		var m wire.SessionInput
		if err := wire.ReadMsg(in, &m); err != nil {
			if ctx.Err() != nil {
				return -1, ctx.Err()
			}
			return -1, fmt.Errorf("the transfer of %s stopped before its end: %w", path, err)
		}
		switch b := m.GetBody().(type) {
		case *wire.SessionInput_FileData:
			if _, err := tmp.Write(b.FileData); err != nil {
				return -1, fmt.Errorf("write %s on the host: %w", path, err)
			}
			*received += int64(len(b.FileData))
		case *wire.SessionInput_FileEnd:
			// A file that is replaced keeps its mode and owner, as cp
			// keeps them: a 0600 secret does not become
			// world-readable, nor a service's file root's. What took
			// the path meanwhile is judged as putTarget judged it.
			if old, err := os.Lstat(path); err == nil {
				switch {
				case old.Mode().IsRegular():
					if err := tmp.Chmod(old.Mode().Perm()); err != nil {
						return -1, err
					}
					if err := keepOwner(tmp, old); err != nil {
						return -1, fmt.Errorf("keep the owner of %s on the host: %w", path, err)
					}
				case old.Mode()&fs.ModeSymlink == 0:
					return -1, notRegular(path, old.Mode())
				}
			}
			if err := tmp.Sync(); err != nil {
				return -1, err
			}
			if err := tmp.Close(); err != nil {
				return -1, err
			}
			// Synced with its folder: "done" means the file survives a
			// power loss.
			if err := fsutil.Rename(tmp.Name(), path); err != nil {
				return -1, fmt.Errorf("put %s on the host: %w", path, err)
			}
			return 0, nil
		}
	}
}

// createTemp creates a new file in dir, named as a put's stand-in, with
// perm as the kernel masks it for new files.
func createTemp(dir string, perm os.FileMode) (*os.File, error) {
	for range 100 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		f, err := os.OpenFile(filepath.Join(dir, ".outpost-put-"+hex.EncodeToString(b[:])), os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("no free temporary name in %s", dir)
}

// notRegular refuses to replace what is not a regular file.
func notRegular(path string, m fs.FileMode) error {
	return fmt.Errorf("put %s: it is not a regular file on the host (%s): copy onto regular files only, or choose another destination", path, fileKind(m))
}

// fileKind names what a non-regular file is.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return m.Type().String()
}
