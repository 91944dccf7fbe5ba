package state

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"

	"github.com/outposthq/outpost/pkg/wire"
)

// A policy of 10,000 items that all fail with a long message (a hook's
// output, 4 KiB each as the runner keeps it) makes one report of about
// 40 MiB: larger than a message may be, so every check-in failed to be
// sent and the agent was never heard of again while the items failed. The
// report a check-in carries is kept within its bytes: every item and its
// status, each message cut short to what fits.
func TestAReportLargerThanACheckinIsCarriedWithShorterMessages(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	s, err := Open(t.TempDir(), pub)
	if err != nil {
		t.Fatal(err)
	}
	msg := strings.Repeat("E: dpkg was interrupted, you must manually run 'dpkg --configure -a'. ", 60)[:4<<10]
	r := &wire.Report{Revision: 9}
	for i := range wire.MaxCheckinReportItems {
		r.Items = append(r.Items, &wire.ItemReport{Id: fmt.Sprintf("package:app-%05d", i), Kind: "package",
			Status: wire.ItemReport_STATUS_FAILED, Message: msg, AtUnix: 1764400000})
	}
	r.Items[7].Message = "short"
	if _, err := s.Enqueue(r); err != nil {
		t.Fatal(err)
	}
	if err := s.SetReport(r); err != nil {
		t.Fatal(err)
	}
	backlog, report := s.CheckinRuns(wire.MaxCheckinBacklog, wire.MaxMessageSize/2)
	var buf bytes.Buffer
	if err := wire.WriteMsg(&buf, &wire.Request{Body: &wire.Request_Checkin{Checkin: &wire.CheckinRequest{Report: report, Backlog: backlog}}}); err != nil {
		t.Fatalf("the check-in cannot be sent: %v", err)
	}
	if buf.Len() > wire.MaxMessageSize/2+(64<<10) {
		t.Fatalf("the check-in takes %d bytes, more than the %d given", buf.Len(), wire.MaxMessageSize/2)
	}
	if len(report.GetItems()) != len(r.Items) {
		t.Fatalf("%d items carried, want all %d", len(report.GetItems()), len(r.Items))
	}
	for i, it := range report.GetItems() {
		if it.GetId() != r.Items[i].GetId() || it.GetStatus() != wire.ItemReport_STATUS_FAILED {
			t.Fatalf("item %d carried as %v", i, it)
		}
		if i != 7 && (len(it.GetMessage()) < 128 || !strings.HasPrefix(msg, strings.TrimSuffix(it.GetMessage(), "..."))) {
			t.Fatalf("item %d's message carried as %q", i, it.GetMessage())
		}
	}
	if got := report.GetItems()[7].GetMessage(); got != "short" {
		t.Fatalf("a short message carried as %q", got)
	}
	// What the agent keeps is whole: only what is sent is cut.
	if got := s.Report().GetItems()[0].GetMessage(); got != msg {
		t.Fatalf("the agent's own report was cut: %d bytes", len(got))
	}
}
