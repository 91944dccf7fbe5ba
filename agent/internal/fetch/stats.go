package fetch

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// maxStats is how many artifacts' figures are kept and reported.
const maxStats = 64

// artifactStats is one artifact's figures since the agent enrolled.
type artifactStats struct {
	Bytes *wire.ArtifactBytes
	At    time.Time
}

func (f *Fetcher) statsFile() string { return filepath.Join(f.dir, "fetched.json") }

func (f *Fetcher) loadStats() {
	b, err := os.ReadFile(f.statsFile())
	if err != nil {
		return
	}
	var raw []json.RawMessage
	if json.Unmarshal(b, &raw) != nil {
		return
	}
	for _, r := range raw[:min(len(raw), maxStats)] {
		var ab wire.ArtifactBytes
		if protojson.Unmarshal(r, &ab) == nil && hexSHA.MatchString(ab.GetSha256()) {
			f.stats[ab.GetSha256()] = &artifactStats{Bytes: &ab}
		}
	}
}

// statsLocked returns the entry of sha, making room for it; f.smu held.
func (f *Fetcher) statsLocked(sha string) *artifactStats {
	st := f.stats[sha]
	if st == nil {
		if len(f.stats) >= maxStats {
			var oldest string
			for k, v := range f.stats {
				if oldest == "" || v.At.Before(f.stats[oldest].At) {
					oldest = k
				}
			}
			delete(f.stats, oldest)
		}
		st = &artifactStats{Bytes: &wire.ArtifactBytes{Sha256: sha}}
		f.stats[sha] = st
	}
	st.At = time.Now()
	f.statsDirty = true
	return st
}

// account adds a download's bytes by source to the artifact's figures.
func (f *Fetcher) account(a *wire.Artifact, bySource map[string]int64, office string) {
	if len(bySource) == 0 {
		return
	}
	f.smu.Lock()
	st := f.statsLocked(a.GetSha256())
	st.Bytes.Peer += bySource["peer"]
	st.Bytes.Relay += bySource["relay"]
	st.Bytes.FileServer += bySource["file_server"]
	f.smu.Unlock()
	f.saveStats()
}

func (f *Fetcher) addBad(sha string) {
	f.smu.Lock()
	f.statsLocked(sha).Bytes.BadChunks++
	f.smu.Unlock()
}

// AddServed books bytes of sha sent to an office peer.
func (f *Fetcher) AddServed(sha string, n int64) {
	f.smu.Lock()
	f.statsLocked(sha).Bytes.Served += n
	f.smu.Unlock()
}

// ArtifactBytes is every artifact's figures, most recent first, for the
// check-in; it also keeps them on disk.
func (f *Fetcher) ArtifactBytes() []*wire.ArtifactBytes {
	f.saveStats()
	f.smu.Lock()
	defer f.smu.Unlock()
	sts := make([]*artifactStats, 0, len(f.stats))
	for _, st := range f.stats {
		sts = append(sts, st)
	}
	sort.Slice(sts, func(i, j int) bool { return sts[i].At.After(sts[j].At) })
	out := make([]*wire.ArtifactBytes, len(sts))
	for i, st := range sts {
		out[i] = &wire.ArtifactBytes{Sha256: st.Bytes.GetSha256(), Peer: st.Bytes.GetPeer(), Relay: st.Bytes.GetRelay(),
			FileServer: st.Bytes.GetFileServer(), Served: st.Bytes.GetServed(), BadChunks: st.Bytes.GetBadChunks()}
	}
	return out
}

func (f *Fetcher) saveStats() {
	f.smu.Lock()
	if !f.statsDirty {
		f.smu.Unlock()
		return
	}
	f.statsDirty = false
	var raw []json.RawMessage
	for _, st := range f.stats {
		if b, err := protojson.Marshal(st.Bytes); err == nil {
			raw = append(raw, b)
		}
	}
	f.smu.Unlock()
	b, err := json.Marshal(raw)
	if err == nil {
		err = fsutil.WriteFileAtomic(f.statsFile(), b, 0o600)
	}
	if err != nil {
		f.log.Debug("keep per-artifact figures", "err", err)
	}
}

// dropPeer keeps a peer that served a bad chunk out of every download
// for d.
func (f *Fetcher) dropPeer(name string, d time.Duration) {
	f.smu.Lock()
	f.bad[name] = time.Now().Add(d)
	f.smu.Unlock()
}

func (f *Fetcher) isBad(name string, now time.Time) bool {
	f.smu.Lock()
	defer f.smu.Unlock()
	until, ok := f.bad[name]
	if ok && now.After(until) {
		delete(f.bad, name)
		return false
	}
	return ok
}
