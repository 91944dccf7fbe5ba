package api

import (
	"sort"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// artifactView is an artifact as the API shows it: the chunk hashes travel
// in signed policy, here only their number.
type artifactView struct {
	SHA256    string    `json:"sha256"`
	Size      int64     `json:"size"`
	Name      string    `json:"name"`
	Uploaded  time.Time `json:"uploaded"`
	ChunkSize int64     `json:"chunk_size,omitempty"`
	Chunks    int       `json:"chunks"`
	// Fetched is shown for one artifact only (GET /v1/artifacts/{sha256}).
	Fetched *fetchedView `json:"fetched,omitempty"`
}

func newArtifactView(a *store.Artifact) artifactView {
	return artifactView{SHA256: a.SHA256, Size: a.Size, Name: a.Name, Uploaded: a.Uploaded, ChunkSize: a.ChunkSize, Chunks: len(a.Chunks) / 32}
}

// sourceBytes is what agents fetched, by source, and what they sent on to
// their office peers.
type sourceBytes struct {
	Agents     int   `json:"agents"`
	Peer       int64 `json:"peer"`
	Relay      int64 `json:"relay"`
	FileServer int64 `json:"file_server"`
	Served     int64 `json:"served_to_peers"`
	BadChunks  int64 `json:"bad_chunks"`
	// HitRatio is the share of the bytes fetched that came from inside
	// the office (peers and relays) rather than straight from the file
	// server; PeerRatio the share from peers alone.
	HitRatio  float64 `json:"hit_ratio"`
	PeerRatio float64 `json:"peer_ratio"`
}

func (s *sourceBytes) add(f store.ArtifactBytes) {
	s.Agents++
	s.Peer += f.Peer
	s.Relay += f.Relay
	s.FileServer += f.FileServer
	s.Served += f.Served
	s.BadChunks += f.BadChunks
}

func (s *sourceBytes) ratios() {
	if total := s.Peer + s.Relay + s.FileServer; total > 0 {
		s.HitRatio = float64(s.Peer+s.Relay) / float64(total)
		s.PeerRatio = float64(s.Peer) / float64(total)
	}
}

type officeBytes struct {
	Office string `json:"office"`
	sourceBytes
}

type fetchedView struct {
	Total   sourceBytes   `json:"total"`
	Offices []officeBytes `json:"offices"`
}

// fetchedBytes adds up the agents' latest figures, per office and in all.
func fetchedBytes(figures []store.ArtifactBytes) *fetchedView {
	v := &fetchedView{Offices: []officeBytes{}}
	by := map[string]*officeBytes{}
	for _, f := range figures {
		v.Total.add(f)
		o := by[f.Office]
		if o == nil {
			o = &officeBytes{Office: f.Office}
			by[f.Office] = o
		}
		o.add(f)
	}
	v.Total.ratios()
	for _, o := range by {
		o.ratios()
		v.Offices = append(v.Offices, *o)
	}
	sort.Slice(v.Offices, func(i, j int) bool { return v.Offices[i].Office < v.Offices[j].Office })
	return v
}
