package quicsrv

import (
	"regexp"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/wire"
)

// maxArtifactBytes bounds the per-artifact figures one check-in carries.
const maxArtifactBytes = 64

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// keepArtifactBytes stores an agent's per-artifact fetch figures (by
// source, cumulative) for outpost artifact show. Figures are informational:
// a malformed entry is skipped, and a failure to keep them does not fail
// the check-in.
func (s *Server) keepArtifactBytes(id, office string, in []*wire.ArtifactBytes, now time.Time) {
	var out []store.ArtifactBytes
	for _, ab := range in[:min(len(in), maxArtifactBytes)] {
		if !sha256RE.MatchString(ab.GetSha256()) || ab.GetPeer() < 0 || ab.GetRelay() < 0 || ab.GetFileServer() < 0 || ab.GetServed() < 0 || ab.GetBadChunks() < 0 {
			continue
		}
		out = append(out, store.ArtifactBytes{SHA256: ab.GetSha256(), Member: id, Office: office, Peer: ab.GetPeer(), Relay: ab.GetRelay(),
			FileServer: ab.GetFileServer(), Served: ab.GetServed(), BadChunks: ab.GetBadChunks(), At: now})
	}
	if err := s.store.PutArtifactBytes(out); err != nil {
		s.log.Warn("keep per-artifact fetch figures", "member", id, "err", err)
	}
}
