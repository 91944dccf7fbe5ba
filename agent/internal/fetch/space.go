package fetch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/outposthq/outpost/pkg/wire"
)

// The content cache shares its disk with the agent's state: a download
// that fills the disk leaves no room to write the report saying so. So a
// download does not start without room for it, and one that fills the
// disk anyway gives its bytes back.

// SpaceError is a fetch refused because the content directory's file
// system has less room than the artifact still needs.
type SpaceError struct {
	Name string // the artifact's name, else its hash
	Need int64  // bytes still to download
	Free uint64 // bytes free for the agent
	Dir  string
}

func (e *SpaceError) Error() string {
	return fmt.Sprintf("not enough disk space for %s: need %s, %s free in %s", e.Name, formatBytes(uint64(e.Need)), formatBytes(e.Free), e.Dir)
}

// checkSpace refuses to fetch a when the free space of the content
// directory is less than its size minus what a partial download of it
// already holds. Where the free space is not known it lets the fetch go.
func (f *Fetcher) checkSpace(a *wire.Artifact, chunked bool, n int) error {
	if f.freeSpace == nil {
		return nil
	}
	free, ok := f.freeSpace(f.dir)
	if !ok {
		return nil
	}
	need := a.GetSize() - f.partialHolds(a, chunked, n)
	if need <= 0 || uint64(need) <= free {
		return nil
	}
	name := a.GetName()
	if name == "" {
		name = a.GetSha256()[:12]
	}
	return &SpaceError{Name: name, Need: need, Free: free, Dir: f.dir}
}

// partialHolds is how many bytes of a a partial download already holds
// on disk (for a chunked one, the chunks its sidecar says arrived: its
// file is sparse).
func (f *Fetcher) partialHolds(a *wire.Artifact, chunked bool, n int) int64 {
	sha := a.GetSha256()
	if !chunked {
		fi, err := os.Lstat(filepath.Join(f.dir, sha+".part"))
		if err != nil || !fi.Mode().IsRegular() || fi.Size() >= a.GetSize() {
			return 0
		}
		return fi.Size()
	}
	if fi, err := os.Lstat(filepath.Join(f.dir, sha+".chunked")); err != nil || !fi.Mode().IsRegular() {
		return 0
	}
	p := loadProgress(filepath.Join(f.dir, sha+".chunks.json"), a.GetSize(), a.GetChunkSize(), n)
	var have int64
	for i := range n {
		if p.Done.has(i) {
			_, l := a.ChunkRange(i)
			have += l
		} else {
			have += p.Partial[i]
		}
	}
	return have
}

// isNoSpace tells whether err is the disk being full.
func isNoSpace(err error) bool {
	if errors.Is(err, syscall.ENOSPC) {
		return true
	}
	var errno syscall.Errno
	// ERROR_HANDLE_DISK_FULL, ERROR_DISK_FULL
	return runtime.GOOS == "windows" && errors.As(err, &errno) && (errno == 39 || errno == 112)
}

func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
