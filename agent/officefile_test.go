package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

// The office information is kept when it changes (not for new seeds or a
// new revision), read back as it was kept, and an unusable file is
// ignored, never trusted in part.
func TestOfficeInformationKeptForTheNextStart(t *testing.T) {
	dir := t.TempDir()
	a := &Agent{cfg: Config{DataDir: dir}, log: logging.Discard()}
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	if a.loadOffice() != nil {
		t.Fatal("information read back before any was kept")
	}
	info := &wire.OfficeInfo{Name: "yard", GossipKey: bytes.Repeat([]byte{1}, 32), GossipKeys: [][]byte{bytes.Repeat([]byte{2}, 32)},
		Relays: []string{"https://10.0.0.5:8090"}, TimeZone: "Europe/Oslo", CheckinIntervalSeconds: 300, Revision: 7, GossipSeeds: []string{"10.0.0.9:7946"}}
	a.saveOffice(nil, info)
	got := a.loadOffice()
	want := proto.Clone(info).(*wire.OfficeInfo)
	want.Revision = 0 // the policy's, kept with the policy
	if !proto.Equal(got, want) {
		t.Fatalf("read back %v, want %v", got, want)
	}
	if k := a.gossipKeys(got); len(k) != 2 || !bytes.Equal(k[0], info.GossipKey) {
		t.Fatalf("gossip keys %x", k)
	}

	// New seeds and revision alone are not written.
	st, _ := os.Stat(a.officeFile())
	os.Chtimes(a.officeFile(), st.ModTime().Add(-1e9), st.ModTime().Add(-1e9))
	st, _ = os.Stat(a.officeFile())
	next := proto.Clone(info).(*wire.OfficeInfo)
	next.Revision, next.GossipSeeds = 8, []string{"10.0.0.10:7946"}
	a.saveOffice(info, next)
	if st2, _ := os.Stat(a.officeFile()); !st2.ModTime().Equal(st.ModTime()) {
		t.Fatal("rewritten for new seeds and revision only")
	}
	// A new key is.
	next.GossipKey = bytes.Repeat([]byte{3}, 32)
	a.saveOffice(info, next)
	if got := a.loadOffice(); !bytes.Equal(got.GetGossipKey(), next.GossipKey) {
		t.Fatal("a new gossip key was not kept")
	}

	for name, content := range map[string][]byte{
		"garbage":    []byte("\xff\xff\xff\xff not a message"),
		"no office":  mustMarshal(t, &wire.OfficeInfo{TimeZone: "UTC"}),
		"oversized":  append(mustMarshal(t, info), make([]byte, maxOfficeFile)...),
		"empty file": {},
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(a.officeFile(), content, 0o600); err != nil {
				t.Fatal(err)
			}
			if got := a.loadOffice(); got != nil {
				t.Fatalf("an unusable file was used: %v", got)
			}
		})
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
