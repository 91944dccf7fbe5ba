package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/wire"
)

// An upload is cut in chunks on its way through; the compiled policy
// carries the chunk hashes (so they are signed), and the artifact shows the
// agents' figures by source, per office, with the hit ratio.
func TestArtifactChunksInPolicyAndFiguresBySource(t *testing.T) {
	srv, st, _ := newAPI(t)
	body := bytes.Repeat([]byte("0123456789abcdef"), (wire.DefaultChunkSize*2+1000)/16)
	code, out := call(t, srv, "POST", "/v1/artifacts?name=big.bin", string(body), token)
	if code != 201 {
		t.Fatalf("upload: %d %v", code, out)
	}
	sha := out["sha256"].(string)
	if out["chunks"].(float64) != 3 || out["chunk_size"].(float64) != wire.DefaultChunkSize {
		t.Fatalf("upload answer %v: want 3 chunks of %d", out, wire.DefaultChunkSize)
	}
	call(t, srv, "POST", "/v1/offices", `{"name":"berlin"}`, token)
	if code, out := call(t, srv, "PUT", "/v1/offices/berlin/policy",
		"items:\n  - kind: package\n    name: big\n    version: \"1\"\n    artifact: "+sha+"\n", token); code != 200 {
		t.Fatalf("apply: %d %v", code, out)
	}
	p, err := st.Policy("berlin")
	if err != nil {
		t.Fatal(err)
	}
	var sp wire.SignedPolicy
	var pol wire.Policy
	if err := proto.Unmarshal(p.Signed, &sp); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(sp.GetPolicy(), &pol); err != nil {
		t.Fatal(err)
	}
	a := pol.GetItems()[0].GetArtifact()
	n, ok, err := a.Chunks()
	if !ok || err != nil || n != 3 {
		t.Fatalf("signed artifact chunks: n=%d ok=%v err=%v", n, ok, err)
	}
	for i := range n {
		off, l := a.ChunkRange(i)
		want := sha256.Sum256(body[off : off+l])
		if !bytes.Equal(a.ChunkHash(i), want[:]) {
			t.Fatalf("chunk %d: hash in the policy differs from the bytes", i)
		}
	}

	if err := st.PutArtifactBytes([]store.ArtifactBytes{
		{SHA256: sha, Member: "ag-1", Office: "berlin", Relay: int64(len(body))},
		{SHA256: sha, Member: "ag-2", Office: "berlin", Peer: int64(len(body)), BadChunks: 1},
		{SHA256: sha, Member: "ag-3", Office: "paris", FileServer: int64(len(body))},
	}); err != nil {
		t.Fatal(err)
	}
	// A later report replaces the agent's earlier one.
	if err := st.PutArtifactBytes([]store.ArtifactBytes{{SHA256: sha, Member: "ag-1", Office: "berlin", Relay: int64(len(body)), Served: 77}}); err != nil {
		t.Fatal(err)
	}
	code, out = call(t, srv, "GET", "/v1/artifacts/"+sha, "", token)
	if code != 200 {
		t.Fatalf("show: %d %v", code, out)
	}
	fetched := out["fetched"].(map[string]any)
	total := fetched["total"].(map[string]any)
	if total["agents"].(float64) != 3 || total["served_to_peers"].(float64) != 77 || total["bad_chunks"].(float64) != 1 {
		t.Errorf("total %v", total)
	}
	if r := total["hit_ratio"].(float64); r < 0.66 || r > 0.67 {
		t.Errorf("total hit ratio %v, want 2/3", r)
	}
	offices := fetched["offices"].([]any)
	berlin := offices[0].(map[string]any)
	if berlin["office"] != "berlin" || berlin["hit_ratio"].(float64) != 1 || berlin["peer_ratio"].(float64) != 0.5 {
		t.Errorf("berlin %v", berlin)
	}
	if code, out := call(t, srv, "GET", "/v1/artifacts", "", token); code != 200 || strings.Contains(func() string { b, _ := jsonString(out); return b }(), "fetched") {
		t.Errorf("list: %d %v (figures are for show only)", code, out)
	}
}

func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}
