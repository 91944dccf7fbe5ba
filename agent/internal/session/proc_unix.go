//go:build unix

package session

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

// killSession kills every process of the session whose leader is sid (a
// terminal's shell): with job control each job runs in a process group of
// its own, which killing the shell's group would leave running. The
// members are found in /proc; where there is none (not Linux), the
// shell's group alone is killed. The session's id is not reused while a
// member lives, and the shell is not reaped before this returns.
func killSession(sid int) error {
	err := syscall.Kill(-sid, syscall.SIGKILL)
	// Again while some were found: one may have forked while /proc was read.
	for range 5 {
		entries, rerr := os.ReadDir("/proc")
		if rerr != nil {
			break
		}
		found := false
		for _, e := range entries {
			pid, perr := strconv.Atoi(e.Name())
			if perr != nil || !inSession(pid, sid) {
				continue
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
			found = true
		}
		if !found {
			break
		}
	}
	return err
}

// inSession says whether the live (not zombie) process pid belongs to the
// session sid, by /proc/PID/stat: "pid (comm) state ppid pgrp session ...".
func inSession(pid, sid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// comm may hold anything, a ')' too: the fields follow the last one.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 4 || f[0] == "Z" || f[0] == "X" {
		return false
	}
	s, err := strconv.Atoi(f[3])
	return err == nil && s == sid
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
