package quicsrv

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/wire"
)

// An enrolled member (a stolen laptop keeps its certificate) can send a
// check-in of millions of empty item reports: two bytes each on the wire,
// a 112-byte struct and a pointer each once decoded. One 8 MiB frame of
// them made the coordinator allocate about 590 MB, and the connection's
// budget counts bytes on the wire only. Such a frame is now weighed before
// it is decoded, refused with a clear answer, and costs the coordinator
// little.
func TestACheckinThatWouldDecodeToHundredsOfMegabytesIsRefused(t *testing.T) {
	s, _, _ := checkinServer(t)
	ctx, conn := memberConn(t, s)
	ci := &wire.CheckinRequest{Hostname: "pc-1"}
	for r := range 64 {
		rep := &wire.Report{Seq: uint64(r + 1), Items: make([]*wire.ItemReport, 60000)}
		for i := range rep.Items {
			rep.Items[i] = &wire.ItemReport{}
		}
		ci.Backlog = append(ci.Backlog, rep)
	}
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	str.SetDeadline(time.Now().Add(30 * time.Second))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := wire.WriteMsg(str, &wire.Request{Body: &wire.Request_Checkin{Checkin: ci}}); err != nil {
		t.Fatal(err)
	}
	var resp wire.Response
	if err := wire.ReadMsg(str, &resp); err != nil {
		t.Fatalf("no answer: %v", err)
	}
	runtime.ReadMemStats(&after)
	// The frame itself, what sending it cost this process, and QUIC's
	// buffers: well under the 590 MB that decoding it took.
	if got := after.TotalAlloc - before.TotalAlloc; got > 100<<20 {
		t.Fatalf("sending and refusing a %d-item check-in allocated %d MiB", 64*60000, got>>20)
	}
	if e := resp.GetError(); e.GetCode() != wire.Error_CODE_BAD_REQUEST || !strings.Contains(e.GetMessage(), "too much memory") {
		t.Fatalf("answer %v, want a bad request saying the message would take too much memory", &resp)
	}
}
