package packages

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// lockName is the file in the state directory whose lock a process holds
// while it changes the packages under a root. The in-process mutex of a
// Manager covers one process only; this covers two: a plugin left running
// by an agent that was killed, next to the one a restarted agent started,
// or the patch plugin installing a fixed version beside the package plugin.
// The operating system drops the lock when its holder dies, however it
// dies, so a crash never leaves the root locked.
const lockName = ".lock"

// DefaultLockWait bounds how long an Apply waits for another process that
// is changing the packages under the same root, unless its context ends
// sooner; it then fails, and the agent tries again at its next run.
const DefaultLockWait = 2 * time.Minute

// lock takes the exclusive lock on the package state under st.root,
// waiting up to wait for a process that holds it. unlock releases it.
func (m *Manager) lock(ctx context.Context, st store) (unlock func(), err error) {
	dir := st.dir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	p := filepath.Join(dir, lockName)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	wait := m.lockWait
	start := time.Now()
	delay := 5 * time.Millisecond
	logged := false
	for {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", p, err)
		}
		if ok {
			break
		}
		waited := time.Since(start)
		if ctx.Err() != nil || waited >= wait {
			holder := lockHolder(p)
			f.Close()
			why := fmt.Sprintf("gave up after %s", waited.Round(time.Millisecond))
			if ctx.Err() != nil {
				why = fmt.Sprintf("gave up after %s: %v", waited.Round(time.Millisecond), ctx.Err())
			}
			return nil, fmt.Errorf("another process%s is changing the packages under %s (it holds the lock %s); %s, the next run tries again",
				holder, st.root, p, why)
		}
		if !logged {
			m.logger.Warn("waiting for another process changing packages under the same root", "root", st.root, "lock", p, "holder", strings.TrimSpace(lockHolder(p)))
			logged = true
		}
		t := time.NewTimer(min(delay, wait-waited))
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		delay = min(2*delay, 200*time.Millisecond)
	}
	// Who holds it, for the message of a process that waits: not needed
	// for the lock itself, so a failure here is ignored.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(fmt.Sprintf("%d\n", os.Getpid())), 0)
	}
	return func() {
		unlockFile(f)
		f.Close()
	}, nil
}

// lockHolder returns " (pid N)" from the lock file, or "".
func lockHolder(p string) string {
	b, err := os.ReadFile(p)
	if s := strings.TrimSpace(string(b)); err == nil && s != "" && len(s) < 20 {
		return " (pid " + s + ")"
	}
	return ""
}
