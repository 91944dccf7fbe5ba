//go:build unix

package session

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// killGroup makes cancelling cmd kill its whole process group, so that a
// shell's children end with the session.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// keepOwner gives f the owner and group of the file it replaces, as cp
// does: a file a service owns stays its own.
func keepOwner(f *os.File, old os.FileInfo) error {
	if st, ok := old.Sys().(*syscall.Stat_t); ok {
		return f.Chown(int(st.Uid), int(st.Gid))
	}
	return nil
}

// lookPath finds the program file names on the PATH of env, as a shell
// started with env would. A name with a slash is taken as it is. Entries
// of PATH that are not absolute are skipped, as exec.LookPath refuses what
// they find: the agent runs as root, in whatever directory it was started.
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, file)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &exec.Error{Name: file, Err: exec.ErrNotFound}
}
