package gossip

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
)

// ErrNoAddress is why a member bound to every address of its host cannot
// start: the host has no private address to announce (no network yet).
var ErrNoAddress = errors.New("no private IP address to advertise (no network, or set the advertise address)")

// maxPacket is the largest UDP datagram a member reads.
const maxPacket = 65536

// transport is memberlist's UDP-and-TCP transport (NetTransport) with one
// change that matters at scale: a packet is read into one buffer reused
// for every read and copied out at its own size. NetTransport allocates a
// fresh 64 KiB for every packet; an office's probes and acks made that the
// largest source of garbage, and collecting it about a fifth of the CPU of
// a hundred idle members. It also sends without resolving the address
// anew for every packet.
type transport struct {
	tcp     *net.TCPListener
	udp     *net.UDPConn
	bindAll bool // bound to every address: advertise a private one
	// privateIP finds that private address.
	privateIP func() (string, error)
	logger    *log.Logger
	packets   chan *memberlist.Packet
	streams   chan net.Conn
	done      chan struct{}
	stopOnce  sync.Once
	wg        sync.WaitGroup
	dials     atomic.Int64 // streams opened, for tests
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

func newTransport(host string, port int, logger *log.Logger) (*transport, error) {
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("bind address %q is not an IP address", host)
	}
	tcp, udp, err := listen(ip, port)
	// A port the system picked for TCP may be taken for UDP: pick again.
	for try := 0; port == 0 && errors.Is(err, syscall.EADDRINUSE) && try < 10; try++ {
		tcp, udp, err = listen(ip, port)
	}
	if err != nil {
		return nil, err
	}
	// Room for a burst of probes and gossip while the reader is busy; the
	// kernel may grant less.
	for size := 2 << 20; size >= 64<<10; size /= 2 {
		if udp.SetReadBuffer(size) == nil {
			break
		}
	}
	t := &transport{
		tcp: tcp, udp: udp, bindAll: ip.IsUnspecified(), privateIP: sockaddr.GetPrivateIP, logger: logger,
		packets: make(chan *memberlist.Packet), streams: make(chan net.Conn), done: make(chan struct{}),
	}
	t.wg.Add(2)
	go t.readPackets()
	go t.accept()
	return t, nil
}

// listen opens the TCP listener and the UDP socket on one port.
func listen(ip net.IP, port int) (*net.TCPListener, *net.UDPConn, error) {
	tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: port})
	if err != nil {
		return nil, nil, err
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: tcp.Addr().(*net.TCPAddr).Port})
	if err != nil {
		tcp.Close()
		return nil, nil, err
	}
	return tcp, udp, nil
}

func (t *transport) readPackets() {
	defer t.wg.Done()
	buf := make([]byte, maxPacket)
	for {
		n, from, err := t.udp.ReadFromUDPAddrPort(buf)
		ts := time.Now()
		if err != nil {
			if t.closed() {
				return
			}
			t.logger.Printf("[ERR] memberlist: reading a UDP packet: %v", err)
			continue
		}
		if n < 1 {
			continue // memberlist needs at least the message type
		}
		// memberlist may keep the packet (it queues some messages), so it
		// gets a copy of its own.
		p := &memberlist.Packet{Buf: append([]byte(nil), buf[:n]...), From: net.UDPAddrFromAddrPort(from), Timestamp: ts}
		select {
		case t.packets <- p:
		case <-t.done:
			return
		}
	}
}

func (t *transport) accept() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		c, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.closed() {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.logger.Printf("[ERR] memberlist: accepting a TCP connection: %v", err)
			select {
			case <-time.After(delay):
			case <-t.done:
				return
			}
			continue
		}
		delay = 0
		select {
		case t.streams <- c:
		case <-t.done:
			c.Close()
			return
		}
	}
}

func (t *transport) closed() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// FinalAdvertiseAddr is what NetTransport's is: the address given, else
// the bound one, else (bound to every address) a private address of this
// host.
func (t *transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip != "" {
		addr := net.ParseIP(ip)
		if addr == nil {
			return nil, 0, fmt.Errorf("advertise address %q is not an IP address", ip)
		}
		if v4 := addr.To4(); v4 != nil {
			addr = v4
		}
		return addr, port, nil
	}
	bound := t.tcp.Addr().(*net.TCPAddr)
	if !t.bindAll {
		return bound.IP, bound.Port, nil
	}
	private, err := t.privateIP()
	if err != nil {
		return nil, 0, fmt.Errorf("finding this host's addresses: %w", err)
	}
	addr := net.ParseIP(private)
	if addr == nil {
		return nil, 0, ErrNoAddress
	}
	return addr, bound.Port, nil
}

func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	// Members' addresses are IP:port; a name is resolved as memberlist does.
	if ap, err := netip.ParseAddrPort(a.Addr); err == nil {
		_, err = t.udp.WriteToUDPAddrPort(b, ap)
		return time.Now(), err
	}
	ua, err := net.ResolveUDPAddr("udp", a.Addr)
	if err != nil {
		return time.Time{}, err
	}
	_, err = t.udp.WriteTo(b, ua)
	return time.Now(), err
}

func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packets }
func (t *transport) StreamCh() <-chan net.Conn           { return t.streams }

func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	t.dials.Add(1)
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", a.Addr)
}

func (t *transport) Shutdown() error {
	t.stopOnce.Do(func() {
		close(t.done)
		t.tcp.Close()
		t.udp.Close()
	})
	t.wg.Wait()
	return nil
}
