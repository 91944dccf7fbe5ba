package wire

import (
	"crypto/ed25519"
	"testing"

	"google.golang.org/protobuf/proto"
)

// The bound on a check-in's report items holds for every run it carries:
// the backlog's runs are kept by the coordinator exactly as the newest
// one, so a backlog run of millions of empty items (two bytes each on the
// wire) would be stored, and held in memory, as millions of statuses.
func TestCheckinTooLargeBoundsTheBacklogsRunsToo(t *testing.T) {
	items := func(n int) []*ItemReport {
		out := make([]*ItemReport, n)
		for i := range out {
			out[i] = &ItemReport{}
		}
		return out
	}
	for name, tc := range map[string]struct {
		req  *CheckinRequest
		want bool
	}{
		"backlog run within the bound": {&CheckinRequest{Backlog: []*Report{{Seq: 1, Items: items(MaxCheckinReportItems)}}}, false},
		"backlog run over the bound":   {&CheckinRequest{Backlog: []*Report{{Seq: 1}, {Seq: 2, Items: items(MaxCheckinReportItems + 1)}}}, true},
		"newest run over the bound":    {&CheckinRequest{Report: &Report{Items: items(MaxCheckinReportItems + 1)}}, true},
	} {
		t.Run(name, func(t *testing.T) {
			if got := CheckinTooLarge(tc.req); got != tc.want {
				t.Fatalf("CheckinTooLarge = %v, want %v", got, tc.want)
			}
		})
	}
}

// A roll-up acknowledgement comes from office peers (the roll-up member,
// or anyone with the office key): VerifyRollupAck takes any bytes, and
// takes only what the policy key signed.
func FuzzVerifyRollupAck(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	signed, err := SignRollupAck(priv, &RollupAck{MemberId: "ag-a", AckedSeq: 7, AtUnix: 1700000000})
	if err != nil {
		f.Fatal(err)
	}
	b, _ := proto.Marshal(signed)
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s SignedRollupAck
		if proto.Unmarshal(b, &s) != nil {
			return
		}
		ack, err := VerifyRollupAck(pub, &s)
		if err == nil && !proto.Equal(ack, &RollupAck{MemberId: "ag-a", AckedSeq: 7, AtUnix: 1700000000}) {
			t.Fatalf("verified an acknowledgement the key did not sign: %v", ack)
		}
	})
}
