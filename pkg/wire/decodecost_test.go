package wire

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"testing"

	"google.golang.org/protobuf/proto"
)

// allocated is what decoding b into a fresh message like m allocates,
// measured (the lowest of a few runs, so that other goroutines' allocation
// counts as little as it can).
func decodeAllocated(t *testing.T, b []byte, m proto.Message) int64 {
	t.Helper()
	best := int64(-1)
	for range 3 {
		dst := m.ProtoReflect().New().Interface()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if err := proto.Unmarshal(b, dst); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(dst)
		if got := int64(after.TotalAlloc - before.TotalAlloc); best < 0 || got < best {
			best = got
		}
	}
	return best
}

// checkinOf is a check-in whose current run and backlog hold items
// reports made by item(i).
func checkinOf(runs, items int, item func(i int) *ItemReport) *CheckinRequest {
	req := &CheckinRequest{Addresses: []string{"10.1.0.17"}}
	for r := range runs {
		rep := &Report{Revision: 12, Seq: uint64(r + 1), AtUnix: 1764400000, BootId: "3b1c8e6e-8d0f-4b8e-9f0e-0d7c5b1a2f3e"}
		for i := range items {
			rep.Items = append(rep.Items, item(i))
		}
		if r == 0 {
			req.Report = rep
		} else {
			req.Backlog = append(req.Backlog, rep)
		}
	}
	return req
}

// The estimate is an upper bound of what the decoder really allocates,
// and not a loose one: it is what refuses hostile bytes, so it must not
// refuse real ones either.
func TestDecodeCostBoundsWhatDecodingAllocates(t *testing.T) {
	cases := map[string]proto.Message{
		"empty item reports": checkinOf(64, 4000, func(int) *ItemReport { return &ItemReport{} }),
		"shortest real item reports": checkinOf(64, 1000, func(i int) *ItemReport {
			return &ItemReport{Id: fmt.Sprintf("package:%c", 'a'+i%26), Kind: "package", Status: ItemReport_STATUS_COMPLIANT, AtUnix: 1764400000}
		}),
		"failing item reports": checkinOf(8, 1000, func(i int) *ItemReport {
			return &ItemReport{Id: fmt.Sprintf("patch:KB%07d", i), Kind: "patch", Status: ItemReport_STATUS_FAILED,
				Message: "download: relay https://10.1.0.5:8090: connection refused; file server: 503 Service Unavailable", AtUnix: 1764400000}
		}),
		"peer reports": &CheckinRequest{PeerReports: func() []string {
			s := make([]string, 50000)
			for i := range s {
				s[i] = fmt.Sprintf("ag-%016x", i)
			}
			return s
		}()},
		"empty strings":  &CheckinRequest{PeerReports: make([]string, 500000)},
		"response error": &Response{Body: &Response_Error{Error: &Error{Code: Error_CODE_DENIED, Message: "no"}}},
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			b, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			est, err := DecodeCost(b, m.ProtoReflect().Descriptor(), 1<<62)
			if err != nil {
				t.Fatal(err)
			}
			got := decodeAllocated(t, b, m)
			t.Logf("%d bytes: estimate %d (%.1f×), allocated %d (%.1f×)", len(b), est, float64(est)/float64(len(b)), got, float64(got)/float64(len(b)))
			if est < got {
				t.Fatalf("estimate %d under the %d bytes decoding allocated", est, got)
			}
			if est > 3*got+4096 {
				t.Fatalf("estimate %d over three times the %d bytes decoding allocated", est, got)
			}
		})
	}
}

// A frame of nothing but empty messages is refused before it is decoded;
// a real check-in of the same size is decoded.
func TestUnmarshalRefusesAmplifyingMessages(t *testing.T) {
	hostile := checkinOf(64, 60000, func(int) *ItemReport { return &ItemReport{} })
	b, _ := proto.Marshal(hostile)
	if len(b) > MaxMessageSize {
		t.Fatalf("set-up: %d bytes, over a frame", len(b))
	}
	var got CheckinRequest
	if err := Unmarshal(b, &got); !errors.Is(err, ErrDecodeCost) {
		t.Fatalf("%d bytes of empty reports: err = %v, want ErrDecodeCost", len(b), err)
	}
	real := checkinOf(64, 4000, func(i int) *ItemReport {
		return &ItemReport{Id: fmt.Sprintf("package:%c", 'a'+i%26), Kind: "package", Status: ItemReport_STATUS_COMPLIANT, AtUnix: 1764400000}
	})
	b, _ = proto.Marshal(real)
	if len(b) > MaxMessageSize {
		t.Fatalf("set-up: %d bytes, over a frame", len(b))
	}
	if err := Unmarshal(b, &got); err != nil {
		t.Fatalf("%d bytes of real reports: %v", len(b), err)
	}
	if !proto.Equal(&got, real) {
		t.Fatal("decoded check-in differs")
	}
}

// A member's frame is weighed as it is read: ReadMsg refuses the hostile
// frame with ErrDecodeCost, and reads a real one.
func TestReadMsgWeighsTheFrame(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMsg(&buf, &Request{Body: &Request_Checkin{Checkin: checkinOf(64, 60000, func(int) *ItemReport { return &ItemReport{} })}}); err != nil {
		t.Fatal(err)
	}
	var req Request
	if err := ReadMsg(&buf, &req); !errors.Is(err, ErrDecodeCost) {
		t.Fatalf("ReadMsg = %v, want ErrDecodeCost", err)
	}
	buf.Reset()
	if err := WriteMsg(&buf, &Request{Body: &Request_Checkin{Checkin: checkinOf(2, 10, func(int) *ItemReport { return &ItemReport{Id: "package:a"} })}}); err != nil {
		t.Fatal(err)
	}
	if err := ReadMsg(&buf, &req); err != nil || len(req.GetCheckin().GetBacklog()) != 1 {
		t.Fatalf("ReadMsg = %v, %v", err, &req)
	}
}

// What weighing costs beside decoding, for a real check-in of 64 runs.
func BenchmarkUnmarshalCheckin(b *testing.B) {
	msg, _ := proto.Marshal(checkinOf(64, 1000, func(i int) *ItemReport {
		return &ItemReport{Id: fmt.Sprintf("package:pkg-%d", i), Kind: "package", Status: ItemReport_STATUS_COMPLIANT, AtUnix: 1764400000}
	}))
	b.Run("proto.Unmarshal", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			var m CheckinRequest
			if err := proto.Unmarshal(msg, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("wire.Unmarshal", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			var m CheckinRequest
			if err := Unmarshal(msg, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// The weighing walks any bytes without failing where the decoder would
// not: whatever it lets through decodes exactly as proto.Unmarshal does.
func FuzzUnmarshal(f *testing.F) {
	for _, m := range []proto.Message{
		&Request{Body: &Request_Checkin{Checkin: checkinOf(3, 4, func(i int) *ItemReport { return &ItemReport{Id: "package:a", Message: "x"} })}},
		&Response{Body: &Response_Error{Error: &Error{Code: Error_CODE_DENIED, Message: "no"}}},
		&CheckinRequest{PeerReports: []string{"", "a"}, Rollup: []*SignedCheckin{{}}},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		var got, want Request
		err := Unmarshal(b, &got)
		if errors.Is(err, ErrDecodeCost) {
			return
		}
		werr := proto.Unmarshal(b, &want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("Unmarshal = %v, proto.Unmarshal = %v", err, werr)
		}
		if err == nil && !proto.Equal(&got, &want) {
			t.Fatal("decoded differently")
		}
	})
}
