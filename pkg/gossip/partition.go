package gossip

import (
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/memberlist"
)

// filtered is the members' transport with some hosts cut off: what
// goes to or comes from a host that allow refuses is dropped, as a broken
// switch would. Tests partition an office with it (Config.Allow).
type filtered struct {
	inner   memberlist.Transport
	allow   func(host string) bool
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
}

func newFiltered(inner memberlist.Transport, allow func(string) bool) *filtered {
	f := &filtered{inner: inner, allow: allow, packets: make(chan *memberlist.Packet), streams: make(chan net.Conn), done: make(chan struct{})}
	go f.pump()
	return f
}

func (f *filtered) allowed(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err != nil || f.allow(host)
}

func (f *filtered) pump() {
	for {
		select {
		case <-f.done:
			return
		case p := <-f.inner.PacketCh():
			if !f.allowed(p.From.String()) {
				continue
			}
			select {
			case f.packets <- p:
			case <-f.done:
				return
			}
		case c := <-f.inner.StreamCh():
			if !f.allowed(c.RemoteAddr().String()) {
				c.Close()
				continue
			}
			select {
			case f.streams <- c:
			case <-f.done:
				c.Close()
				return
			}
		}
	}
}

func (f *filtered) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return f.inner.FinalAdvertiseAddr(ip, port)
}

func (f *filtered) WriteTo(b []byte, addr string) (time.Time, error) {
	if !f.allowed(addr) {
		return time.Now(), nil // lost on the way
	}
	return f.inner.WriteTo(b, addr)
}

func (f *filtered) PacketCh() <-chan *memberlist.Packet { return f.packets }
func (f *filtered) StreamCh() <-chan net.Conn           { return f.streams }

func (f *filtered) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if !f.allowed(addr) {
		return nil, fmt.Errorf("dial %s: cut off (partition)", addr)
	}
	return f.inner.DialTimeout(addr, timeout)
}

func (f *filtered) Shutdown() error {
	close(f.done)
	return f.inner.Shutdown()
}
