package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	in := &Request{Body: &Request_Checkin{Checkin: &CheckinRequest{Hostname: "pc-1", Revision: 7}}}
	if err := WriteMsg(&buf, in); err != nil {
		t.Fatal(err)
	}
	var out Request
	if err := ReadMsg(&buf, &out); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(in, &out) {
		t.Fatalf("got %v, want %v", &out, in)
	}
}

func TestFrameRejectsOversize(t *testing.T) {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], MaxMessageSize+1)
	var out Request
	err := ReadMsg(bytes.NewReader(hdr[:]), &out)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

func TestFrameTruncated(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMsg(&buf, &Request{Body: &Request_Policy{Policy: &PolicyRequest{HaveRevision: 3}}}); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	var out Request
	if err := ReadMsg(bytes.NewReader(b[:len(b)-1]), &out); err == nil {
		t.Fatal("truncated frame was accepted")
	}
}

func FuzzReadMsg(f *testing.F) {
	var buf bytes.Buffer
	_ = WriteMsg(&buf, &Request{Body: &Request_Enroll{Enroll: &EnrollRequest{Token: "t", Hostname: "h"}}})
	f.Add(buf.Bytes())
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var out Request
		_ = ReadMsg(bytes.NewReader(b), &out)
	})
}

func TestSignVerify(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	otherPub, _, _ := ed25519.GenerateKey(nil)
	p := &Policy{Office: "berlin", Revision: 3, Items: []*Item{{Id: "package/hello", Kind: "package", State: State_STATE_PRESENT}}}
	sp, err := SignPolicy(priv, p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyPolicy(pub, sp)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, p) {
		t.Fatalf("got %v, want %v", got, p)
	}

	tampered := proto.Clone(sp).(*SignedPolicy)
	tampered.Policy[len(tampered.Policy)-1] ^= 1
	forged, _ := SignPolicy(func() ed25519.PrivateKey { _, k, _ := ed25519.GenerateKey(nil); return k }(), p)
	zero, _ := SignPolicy(priv, &Policy{Office: "berlin"})
	for name, tc := range map[string]struct {
		pub ed25519.PublicKey
		sp  *SignedPolicy
	}{
		"tampered":     {pub, tampered},
		"other key":    {otherPub, sp},
		"forged":       {pub, forged},
		"nil":          {pub, nil},
		"revision 0":   {pub, zero},
		"short pinned": {pub[:5], sp},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := VerifyPolicy(tc.pub, tc.sp); err == nil {
				t.Fatal("verified")
			}
		})
	}
}

func FuzzVerifyPolicy(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	sp, _ := SignPolicy(priv, &Policy{Office: "o", Revision: 1})
	b, _ := proto.Marshal(sp)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var sp SignedPolicy
		if proto.Unmarshal(b, &sp) != nil {
			return
		}
		_, _ = VerifyPolicy(pub, &sp)
	})
}

func TestChunkHasherAndChunks(t *testing.T) {
	data := make([]byte, 10*1000+7)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for _, tc := range []struct {
		name   string
		writes []int
	}{{"one write", []int{len(data)}}, {"odd writes", []int{1, 999, 1000, 3, 5000, 3004}}} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewChunkHasher(1000)
			off := 0
			for _, w := range tc.writes {
				h.Write(data[off : off+w])
				off += w
			}
			n, sums := h.Sum()
			a := &Artifact{Sha256: "x", Size: int64(len(data)), ChunkSize: 1000, ChunkSha256: sums}
			count, ok, err := a.Chunks()
			if n != int64(len(data)) || !ok || err != nil || count != 11 {
				t.Fatalf("n=%d count=%d ok=%v err=%v", n, count, ok, err)
			}
			for i := range count {
				off, l := a.ChunkRange(i)
				want := sha256.Sum256(data[off : off+l])
				if !bytes.Equal(a.ChunkHash(i), want[:]) {
					t.Fatalf("chunk %d hash differs", i)
				}
			}
		})
	}
	for name, a := range map[string]*Artifact{
		"short list":    {Size: 2000, ChunkSize: 1000, ChunkSha256: make([]byte, 32)},
		"no chunk size": {Size: 2000, ChunkSha256: make([]byte, 64)},
		"ragged":        {Size: 2000, ChunkSize: 1000, ChunkSha256: make([]byte, 65)},
	} {
		if _, ok, err := a.Chunks(); ok || err == nil {
			t.Errorf("%s: ok=%v err=%v, want an error", name, ok, err)
		}
	}
	if _, ok, err := (&Artifact{Size: 5}).Chunks(); ok || err != nil {
		t.Errorf("no chunks: ok=%v err=%v", ok, err)
	}
}
