package store

import (
	"path/filepath"
	"testing"
	"time"
)

// An artifact uploaded before chunks existed gains them when pushed again;
// its first upload time stays.
func TestArtifactGainsChunksOnReupload(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	first := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.PutArtifact(Artifact{SHA256: "aa", Size: 10, Name: "a", Uploaded: first}); err != nil {
		t.Fatal(err)
	}
	got, err := s.PutArtifact(Artifact{SHA256: "aa", Size: 10, Name: "a", Uploaded: first.Add(time.Hour), ChunkSize: 4, Chunks: make([]byte, 96)})
	if err != nil || got.ChunkSize != 4 || len(got.Chunks) != 96 || !got.Uploaded.Equal(first) {
		t.Fatalf("%+v, %v", got, err)
	}
	again, _ := s.Artifact("aa")
	if len(again.Chunks) != 96 {
		t.Fatalf("stored %+v", again)
	}
}

// Per-artifact figures: one record per agent, the latest replacing the one
// before, and another artifact's never mixed in.
func TestArtifactBytesLatestPerAgent(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "outpost.db"))
	if got, err := s.ArtifactBytesOf("aa"); err != nil || len(got) != 0 {
		t.Fatalf("before any: %v, %v", got, err)
	}
	for _, sha := range []string{"aa", "aab"} {
		if _, err := s.PutArtifact(Artifact{SHA256: sha, Size: 1, Name: sha}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range [][]ArtifactBytes{
		{{SHA256: "aa", Member: "ag-1", Peer: 1}, {SHA256: "aab", Member: "ag-1", Peer: 100}},
		{{SHA256: "aa", Member: "ag-2", Relay: 5}},
		{{SHA256: "aa", Member: "ag-1", Peer: 7}},
	} {
		if err := s.PutArtifactBytes(f); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ArtifactBytesOf("aa")
	if err != nil || len(got) != 2 || got[0].Member != "ag-1" || got[0].Peer != 7 || got[1].Relay != 5 {
		t.Fatalf("%+v, %v", got, err)
	}
}
