package gossip

import (
	"bytes"
	"log"
	"net"
	"strconv"
	"testing"
	"time"
)

// Packets read into the one reused buffer keep their own bytes, and the
// transport sends to, dials and advertises the address it is bound to.
func TestTransportKeepsEachPacket(t *testing.T) {
	logger := log.New(testWriter{t}, "", 0)
	a, err := newTransport("127.0.0.1", 0, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	b, err := newTransport("127.0.0.1", 0, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	ip, port, err := b.FinalAdvertiseAddr("", 0)
	if err != nil || !ip.Equal(net.ParseIP("127.0.0.1")) || port == 0 {
		t.Fatalf("advertise: %v %d %v", ip, port, err)
	}
	to := net.JoinHostPort(ip.String(), strconv.Itoa(port))
	first, second := bytes.Repeat([]byte{'a'}, 1000), []byte("b")
	for _, m := range [][]byte{first, second} {
		if _, err := a.WriteTo(m, to); err != nil {
			t.Fatal(err)
		}
	}
	var got [][]byte
	for len(got) < 2 {
		select {
		case p := <-b.PacketCh():
			got = append(got, p.Buf)
			if p.From.String() != a.tcp.Addr().String() {
				t.Errorf("from %v, want %v", p.From, a.tcp.Addr())
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no packet")
		}
	}
	if !bytes.Equal(got[0], first) || !bytes.Equal(got[1], second) {
		t.Fatalf("packets changed after they were read: %q…, %q", got[0][:4], got[1])
	}
	c, err := a.DialTimeout(to, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case s := <-b.StreamCh():
		s.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no stream")
	}
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := b.Shutdown(); err != nil { // memberlist may call it again
		t.Fatal(err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
