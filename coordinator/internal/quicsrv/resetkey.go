package quicsrv

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/quic-go/quic-go"

	"github.com/outposthq/outpost/pkg/fsutil"
)

// loadResetKey reads the key the QUIC transport derives stateless reset
// tokens from, creating it on first start. Kept across restarts, it lets a
// restarted coordinator answer packets of connections it no longer knows
// with a reset, so members redial at once instead of after the idle
// timeout (a minute of every member cut off).
func loadResetKey(path string) (*quic.StatelessResetKey, error) {
	var key quic.StatelessResetKey
	b, err := os.ReadFile(path)
	switch {
	case err == nil && len(b) == len(key):
		copy(key[:], b)
		return &key, nil
	case err == nil:
		return nil, fmt.Errorf("QUIC reset key %s is damaged (%d bytes): delete it to make a new one", path, len(b))
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("read QUIC reset key: %w", err)
	}
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(path, key[:], 0o600); err != nil {
		return nil, fmt.Errorf("write QUIC reset key: %w", err)
	}
	return &key, nil
}
