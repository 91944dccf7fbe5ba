package agent

import (
	"os"
	"syscall"
	"time"
)

// runningImage is the file the process runs from, replaced or not: Linux
// keeps it reachable through /proc.
func runningImage() os.FileInfo {
	fi, err := os.Stat("/proc/self/exe")
	if err != nil {
		return nil
	}
	return fi
}

// changeTime is when the file's inode last changed: a file written anew
// has its own.
func changeTime(fi os.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
	}
	return time.Time{}
}
