package api

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/wire"
	"google.golang.org/protobuf/proto"
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
	// AlreadyStored answers an upload of bytes that were there: the
	// record, its name and time, are the first upload's.
	AlreadyStored bool `json:"already_stored,omitempty"`
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

// removeArtifact deletes an artifact nothing uses any more: its record,
// its figures and its bytes on the file server. It is refused while an
// office's or a named policy, a patch of the catalog, or a revision that
// agents are still told names it; the answer lists them. The record goes
// first: a removal cut short leaves bytes nothing names, which the same
// call removes when run again, never a record without bytes.
func (a *API) removeArtifact(w http.ResponseWriter, r *http.Request) error {
	sha := strings.TrimPrefix(r.PathValue("sha256"), "sha256:")
	if !sha256Hex.MatchString(sha) {
		return httpError(http.StatusBadRequest, "%q is not a SHA-256 (64 lower-case hex digits)", sha)
	}
	a.artifactsMu.Lock()
	defer a.artifactsMu.Unlock()
	rec, err := a.d.Store.Artifact(sha)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if rec != nil {
		users, err := a.artifactUsers(sha)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return httpError(http.StatusConflict, "artifact %s (%s) is in use: %s; take it out of %s first",
				sha[:12], rec.Name, strings.Join(users, "; "), map[bool]string{true: "it", false: "them"}[len(users) == 1])
		}
		if rec, err = a.d.Store.DeleteArtifact(sha); err != nil {
			return err
		}
	}
	existed := false
	if a.d.Files != nil {
		if existed, err = a.d.Files.Remove(r.Context(), sha); err != nil {
			if rec != nil {
				a.audit(r, "artifact.remove", "artifact "+sha, fmt.Sprintf("%s, %d bytes; the file server kept its bytes", rec.Name, rec.Size))
			}
			return httpError(http.StatusBadGateway, "artifact %s: its record is removed, but the file server kept its bytes (%v); run the removal again to free them", sha[:12], err)
		}
	}
	if rec == nil && !existed {
		return httpError(http.StatusNotFound, "no artifact %s: it was never uploaded, or is removed already (see outpost artifact list)", sha)
	}
	out := removedArtifact{SHA256: sha, FreedFileServer: existed}
	detail := "bytes left on the file server"
	if rec != nil {
		out.Name, out.Size = rec.Name, rec.Size
		detail = fmt.Sprintf("%s, %d bytes", rec.Name, rec.Size)
	}
	a.log.Info("artifact removed", "sha256", sha, "name", out.Name, "size", out.Size, "file_server", existed)
	a.audit(r, "artifact.remove", "artifact "+sha, detail)
	writeJSON(w, http.StatusOK, out)
	return nil
}

type removedArtifact struct {
	SHA256 string `json:"sha256"`
	Name   string `json:"name,omitempty"` // empty when only bytes were left
	Size   int64  `json:"size,omitempty"`
	// FreedFileServer says whether the file server held its bytes.
	FreedFileServer bool `json:"freed_file_server"`
}

// artifactUsers names what uses an artifact: offices' own policies, named
// policies and catalog patches (which any later revision is made from),
// and the revisions agents are told now, among them a distribution
// office's release that waits for its relay. Called with artifactsMu held.
func (a *API) artifactUsers(sha string) ([]string, error) {
	var users []string
	names := func(items []*wire.Item) bool {
		return slices.ContainsFunc(items, func(it *wire.Item) bool { return it.GetArtifact().GetSha256() == sha })
	}
	a.scopeMu.Lock()
	defer a.scopeMu.Unlock()
	sc, err := a.loadScope()
	if err != nil {
		return nil, err
	}
	for _, p := range sc.named {
		if names(p.items) {
			users = append(users, "policy "+p.Name)
		}
	}
	ps, err := a.d.Store.Patches()
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if p.Artifact == sha {
			users = append(users, "patch "+p.ID+" of the catalog")
		}
	}
	offices, err := a.d.Store.Offices()
	if err != nil {
		return nil, err
	}
	for _, o := range offices {
		items, err := sc.officeItems(o.Name)
		if err != nil {
			return nil, err
		}
		if names(items) {
			users = append(users, "the policy of office "+o.Name)
			continue
		}
		// What agents are told may be older than the sources: a release
		// waiting for its relay, or a revision made before a source changed
		// (a patch's artifact replaced in the catalog).
		for _, told := range []func(string) (*store.Policy, error){a.d.Store.Policy, a.released} {
			p, err := told(o.Name)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			in, err := signedNames(p.Signed, sha)
			if err != nil {
				return nil, fmt.Errorf("revision %d of office %s: %w", p.Revision, o.Name, err)
			}
			if in {
				users = append(users, fmt.Sprintf("revision %d of office %s, which its agents are told", p.Revision, o.Name))
				break
			}
		}
	}
	return users, nil
}

// released is a distribution office's release as a Policy (ErrNotFound
// for other offices and before the first).
func (a *API) released(office string) (*store.Policy, error) {
	rel, err := a.d.Store.Released(office)
	if err != nil {
		return nil, err
	}
	return &store.Policy{Office: office, Revision: rel.Revision, Signed: rel.Signed}, nil
}

// signedNames says whether a serialized signed policy names an artifact,
// in its items or among its variants' (the office-wide policy lists what
// its members' own policies name).
func signedNames(signed []byte, sha string) (bool, error) {
	var sp wire.SignedPolicy
	if err := proto.Unmarshal(signed, &sp); err != nil {
		return false, fmt.Errorf("decode signed policy: %w", err)
	}
	var p wire.Policy
	if err := proto.Unmarshal(sp.GetPolicy(), &p); err != nil {
		return false, fmt.Errorf("decode policy: %w", err)
	}
	for _, it := range p.GetItems() {
		if it.GetArtifact().GetSha256() == sha {
			return true, nil
		}
	}
	return slices.ContainsFunc(p.GetVariantArtifacts(), func(v *wire.Artifact) bool { return v.GetSha256() == sha }), nil
}
