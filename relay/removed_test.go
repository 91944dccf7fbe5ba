package relay

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/wire"
)

// The coordinator's list of removed members is kept on the relay's disk
// as given, so that a relay restarted while the coordinator is away
// refuses them from its first request; a damaged or hostile file is
// refused whole (the coordinator's list comes at the next check-in).
func TestRemovedMembersAreKeptOnDisk(t *testing.T) {
	dir := t.TempDir()
	if set, err := loadRemoved(dir); err != nil || set.version != 0 || set.has("ag-1") {
		t.Fatalf("none kept: %+v %v", set, err)
	}
	if err := saveRemoved(dir, &wire.RemovedMembers{Version: 4, Ids: []string{"ag-1", "ag-2"}}); err != nil {
		t.Fatal(err)
	}
	set, err := loadRemoved(dir)
	if err != nil || set.version != 4 || !set.has("ag-1") || !set.has("ag-2") || set.has("ag-3") {
		t.Fatalf("kept: %+v %v", set, err)
	}
	var nilSet *removedSet
	if nilSet.has("ag-1") {
		t.Fatal("no list refuses someone")
	}

	for name, b := range map[string][]byte{
		"not protobuf": []byte("\xff\xff\xff"),
		"an empty id":  mustMarshal(t, &wire.RemovedMembers{Version: 1, Ids: []string{""}}),
		"a long id":    mustMarshal(t, &wire.RemovedMembers{Version: 1, Ids: []string{strings.Repeat("a", maxMemberIDSize+1)}}),
	} {
		if err := os.WriteFile(filepath.Join(dir, removedFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadRemoved(dir); err == nil {
			t.Errorf("%s: taken", name)
		}
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

// What the relay takes from its disk or a check-in answer: never a
// panic, and a set it takes lists only ids within the bounds.
func FuzzDecodeRemoved(f *testing.F) {
	f.Add(mustMarshalF(f, &wire.RemovedMembers{Version: 2, Ids: []string{"ag-1", "ag-2"}}))
	f.Add([]byte{})
	f.Add([]byte("\x12\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		set, err := decodeRemoved(b)
		if err != nil {
			return
		}
		if len(set.ids) > maxRemoved {
			t.Fatalf("%d ids taken", len(set.ids))
		}
		for id := range set.ids {
			if id == "" || len(id) > maxMemberIDSize {
				t.Fatalf("id %q taken", id)
			}
		}
	})
}

func mustMarshalF(f *testing.F, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	return b
}
