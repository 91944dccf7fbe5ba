package session

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"

	"github.com/outposthq/outpost/pkg/fsutil"
)

// spentFile keeps the ids of the session tokens this host took, until they
// expire: a restart within a token's two minutes must not make it new.
const spentFile = "spent-session-tokens.json"

// maxSpentFile bounds what is read of it: maxSpentTokens ids, each a few
// dozen bytes.
const maxSpentFile = 2 << 20

func (s *Server) spentPath() string { return filepath.Join(s.cfg.DataDir, spentFile) }

// loadSpent reads the ids kept on disk that have not expired. A file that
// does not read costs the ids it held, not the agent's start (its
// sessions are what a technician needs to repair a host).
func (s *Server) loadSpent() {
	f, err := os.Open(s.spentPath())
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var ids map[string]int64
	if err == nil {
		err = json.NewDecoder(&limitedReader{f, maxSpentFile}).Decode(&ids)
		f.Close()
	}
	if err != nil {
		s.log.Warn("spent session tokens not read: a token taken before the restart could open one more session until it expires (two minutes at most)", "file", s.spentPath(), "err", err)
		return
	}
	now := s.now().UnixMilli()
	s.spent = map[string]int64{}
	for id, exp := range ids {
		if exp > now && len(s.spent) < maxSpentTokens && len(id) <= 256 {
			s.spent[id] = exp
		}
	}
}

// saveSpent writes ids, the spent tokens as of version, unless a newer
// version was written already. A write that fails is logged: the session
// goes ahead (a host whose disk is full is one a technician must reach),
// and the id is still kept in memory.
func (s *Server) saveSpent(ids map[string]int64, version uint64) {
	s.spentSave.Lock()
	defer s.spentSave.Unlock()
	if version <= s.spentSaved {
		return
	}
	b, err := json.Marshal(ids)
	if err == nil {
		err = fsutil.WriteFileAtomic(s.spentPath(), b, 0o600)
	}
	if err != nil {
		s.log.Warn("spent session tokens not written: a restart within two minutes would take them again", "err", err)
		return
	}
	s.spentSaved = version
}

// limitedReader fails a read past n bytes, where io.LimitReader would end
// quietly in the middle of the JSON.
type limitedReader struct {
	f *os.File
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("file larger than allowed")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.f.Read(p)
	l.n -= int64(n)
	return n, err
}
