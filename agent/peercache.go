package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/outposthq/outpost/agent/internal/fetch"
	"github.com/outposthq/outpost/agent/internal/peercache"
	"github.com/outposthq/outpost/pkg/gossip"
)

// officePeers is the office, as the fetcher and the chunk server see it:
// from the gossip's member list and what each member announces.
type officePeers struct {
	a      *Agent
	client *http.Client
}

func (o officePeers) Self() string { return o.a.id.ID }

func (o officePeers) Client() *http.Client { return o.client }

func (o officePeers) BadPeer(peer, what string) { o.a.reportPeer(peer, what, "") }

// Peers lists the live members that serve chunks, with the URL they
// serve on: the address they gossip from and the port they announce.
func (o officePeers) Peers() []fetch.Peer {
	return o.serving(func(gossip.Peer) bool { return true })
}

// Holders lists the peers announcing sha.
func (o officePeers) Holders(sha string) []fetch.Peer {
	return o.serving(func(p gossip.Peer) bool { return p.Meta.Holdings.Has(sha) })
}

func (o officePeers) serving(keep func(gossip.Peer) bool) []fetch.Peer {
	var out []fetch.Peer
	for _, p := range o.a.gossip.peers() {
		if p.Meta.ContentPort == 0 || !keep(p) {
			continue
		}
		host, _, err := net.SplitHostPort(p.Addr)
		if err != nil {
			continue
		}
		out = append(out, fetch.Peer{Name: p.Name, URL: "https://" + net.JoinHostPort(host, strconv.Itoa(p.Meta.ContentPort))})
	}
	return out
}

func (o officePeers) HolderCount(sha string) int { return len(o.Holders(sha)) + 1 }

func (o officePeers) IsMember(id string) bool {
	for _, p := range o.a.gossip.peers() {
		if p.Name == id {
			return true
		}
	}
	return false
}

func (o officePeers) Name() string {
	office, _ := o.a.Office()
	return office
}

// startPeerCache listens for office peers asking for chunks, at the
// gossip address, and announces the port and what is held.
func (a *Agent) startPeerCache(fetcher *fetch.Fetcher) (func(context.Context) error, error) {
	if a.cfg.PeerListen == "off" {
		return nil, nil
	}
	clientTLS, err := peercache.ClientTLS(a.id.ClientCertificate, a.id.CAs)
	if err != nil {
		return nil, err
	}
	serverTLS, err := peercache.ServerTLS(a.id.ServerCertificate, a.id.CAs)
	if err != nil {
		return nil, err
	}
	op := officePeers{a: a, client: &http.Client{Transport: &http.Transport{
		TLSClientConfig: clientTLS, MaxIdleConnsPerHost: 8, IdleConnTimeout: time.Minute,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 30 * time.Second,
		// A chunk map is under 2 KiB: a peer's headers are not 10 MiB
		// of this agent's memory (net/http's default).
		MaxResponseHeaderBytes: 64 << 10,
	}}}
	a.officePeers = &op
	srv, err := peercache.New(fetcher, op, a.cfg.PeerBudget, a.log, a.reg)
	if err != nil {
		return nil, err
	}
	listen := a.cfg.PeerListen
	if listen == "" {
		host, _, _ := net.SplitHostPort(a.cfg.GossipBind)
		listen = net.JoinHostPort(host, "0")
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("peer content listener on %s: %w (peer_listen; \"off\" serves no peers)", listen, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	var mu sync.Mutex
	announce := func() {
		mu.Lock() // in order: memberlist waits for each update to go out
		defer mu.Unlock()
		a.gossip.setHoldings(port, gossip.NewHoldings(fetcher.Holdings()))
	}
	fetcher.OnHoldings(func() { go announce() })
	announce()
	return func(ctx context.Context) error {
		a.log.Info("serving chunks to office peers", "addr", ln.Addr().String())
		return srv.Serve(ctx, ln, serverTLS)
	}, nil
}
