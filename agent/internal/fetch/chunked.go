package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// Office is the agent's office as the fetcher sees it: which peers may
// hold an artifact and how to reach them. Declared here, where it is used.
type Office interface {
	// Self is this member's id.
	Self() string
	// Holders lists the live office peers that announce holding sha
	// (whole, or verified chunks of it).
	Holders(sha string) []Peer
	// Peers lists the other live members that serve chunks to peers,
	// whatever they hold.
	Peers() []Peer
	// Client reaches peers (mutual TLS with member certificates).
	Client() *http.Client
	// BadPeer is told of a peer that served bytes failing their hash.
	BadPeer(peer, what string)
	// IsMember tells whether id is a live member of the office: a peer's
	// word that some member is downloading counts only for those.
	IsMember(id string) bool
}

// Peer is an office member that may serve chunks.
type Peer struct {
	Name string // its member id: the certificate it presents carries it
	URL  string // base URL, https://ip:port
}

// PeerChunksPath is where a member serves chunks to office peers:
// PeerChunksPath+sha is the map of chunks it can serve, +sha/i chunk i.
const PeerChunksPath = "/v1/peer/chunks/"

// Response headers of the peer protocol.
const (
	HeaderHave     = "X-Outpost-Have"     // base64 of the serving member's chunk map
	HeaderFetching = "X-Outpost-Fetching" // "1" while it downloads the artifact
	HeaderPending  = "X-Outpost-Pending"  // base64 of the chunks it is fetching now
	HeaderChunks   = "X-Outpost-Chunks"   // the number of chunks
	HeaderFetchers = "X-Outpost-Fetchers" // comma-separated: the members it knows first hand to be downloading the artifact
)

// maxFetchers bounds the members one download counts as sharing the
// relay's work, and what a peer may tell of them.
const maxFetchers = 64

// Tuning is how a chunked download shares the work; the zero value takes
// the defaults for an office network.
type Tuning struct {
	Workers    int           // chunks in flight (default 4)
	PerPeer    int           // chunks in flight from one peer (default 2)
	PerOrigin  int           // chunks in flight from the relay or file server (default 2)
	Settle     time.Duration // wait for peers to announce the same download before taking shares from the relay (1s)
	StallAfter time.Duration // no new chunk here for this long: take any chunk from the relay; a peer whose chunk map has not grown for this long no longer holds back the relay; a peer that sends less than a block (256 KiB) of a chunk in this long gives the chunk up (20s)
	Refresh    time.Duration // how often peers' chunk maps are read while waiting (500ms)
	BadFor     time.Duration // a peer that served a bad chunk is not asked again for this long (10m)
}

func (t Tuning) withDefaults() Tuning {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if t.Workers <= 0 {
		t.Workers = 4
	}
	if t.PerPeer <= 0 {
		t.PerPeer = 2
	}
	if t.PerOrigin <= 0 {
		t.PerOrigin = 2
	}
	def(&t.Settle, time.Second)
	def(&t.StallAfter, 20*time.Second)
	def(&t.Refresh, 500*time.Millisecond)
	def(&t.BadFor, 10*time.Minute)
	return t
}

// SetTuning changes how chunked downloads share the work; call it before
// the first Get.
func (f *Fetcher) SetTuning(t Tuning) { f.tuning = t.withDefaults() }

// errBadChunk is a chunk whose bytes failed its hash.
var errBadChunk = errors.New("chunk failed its hash")

// source is where one chunk comes from.
type source struct {
	kind string // "peer", "relay", "file_server"
	name string // the peer's member id, or the relay's URL
	peer *peerState
}

// flight is a chunk being fetched now.
type flight struct {
	origin  bool               // from the relay or the file server
	cancel  context.CancelFunc // gives the chunk up (a peer with a lower name is fetching it too)
	yielded bool               // given up for a peer: its error is no source's fault
}

type peerState struct {
	Peer
	have     bitset // nil until known
	pending  bitset // chunks it is fetching now
	fetching bool
	inflight int
	until    time.Time // not asked before (busy, unreachable)
	seen     time.Time // when its chunk map last came
	most     int       // the most chunks its map has shown
	grewAt   time.Time // when its map last showed more chunks than ever before
}

// session is one chunked download of one artifact.
type session struct {
	f      *Fetcher
	a      *wire.Artifact
	n      int
	src    Sources
	office Office
	t      Tuning
	h      *held
	file   *os.File
	prog   *progress

	mu           sync.Mutex
	changed      chan struct{} // closed and replaced when something worth re-planning happens
	inflight     map[int]*flight
	peers        map[string]*peerState
	dropped      map[string]bool
	fetchers     []string             // members downloading this artifact now, sorted; shares of the relay's work
	mine         bitset               // the chunks that are this member's share of the relay's work
	heard        map[string]time.Time // members peers told of as downloading it → when
	probed       map[string]bool      // members asked directly (discover)
	rot          int                  // where this member starts in the chunk list
	lastProgress time.Time
	unsaved      int64
	origins      []string // relay URLs, then "" for the file server
	originAt     int
	originFails  int
	originBusy   int
	presigned    string
	fatal        error
	bytes        map[string]int64     // by source kind, this session
	waiting      int                  // workers with nothing to do: peers' maps are worth reading
	retryAt      map[int]time.Time    // chunks that failed from the relay: not before
	named        map[string]time.Time // members counted as downloading it → when first
	partFrom     map[int]string       // the peer that sent a partial chunk's bytes ("" from the relay or file server, "*" several)
	suspect      map[int]suspect      // resumed chunks that failed their hash, until fetched whole
}

// suspect is a chunk that failed its hash after it was resumed: the bytes
// it was resumed from, and the peer that sent them. Once the chunk comes
// whole and checks, those bytes tell whether the peer lied.
type suspect struct {
	peer string
	n    int64
	sum  []byte
}

// getChunked downloads a in chunks from office peers and the relay (or
// file server) at once, checking each chunk against the signed policy's
// hash before it is written in place.
func (f *Fetcher) getChunked(ctx context.Context, a *wire.Artifact, n int, src Sources) error {
	sha := a.GetSha256()
	part := filepath.Join(f.dir, sha+".chunked")
	sidecar := filepath.Join(f.dir, sha+".chunks.json")
	fh, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		// A sidecar left without its partial (a kill between the two
		// removals) speaks of bytes that are gone.
		os.Remove(sidecar)
	} else if errors.Is(err, os.ErrExist) {
		fh, err = os.OpenFile(part, os.O_RDWR, 0o600)
	}
	if err != nil {
		return fmt.Errorf("open partial download: %w", err)
	}
	defer fh.Close()
	prog := loadProgress(sidecar, a.GetSize(), a.GetChunkSize(), n)
	if fi, err := fh.Stat(); err == nil && fi.Size() != a.GetSize() {
		if err := fh.Truncate(a.GetSize()); err != nil {
			if isNoSpace(err) {
				fh.Close()
				prog.remove() // the sidecar first: it speaks for the partial
				os.Remove(part)
			}
			return fmt.Errorf("size partial download: %w", err)
		}
	}
	s := &session{f: f, a: a, n: n, src: src, office: src.Peers, t: f.tuning, file: fh, prog: prog,
		changed: make(chan struct{}), inflight: map[int]*flight{}, peers: map[string]*peerState{}, dropped: map[string]bool{}, heard: map[string]time.Time{}, probed: map[string]bool{},
		rot: rand.IntN(n), lastProgress: time.Now(), bytes: map[string]int64{}, retryAt: map[int]time.Time{},
		named: map[string]time.Time{}, partFrom: map[int]string{}, suspect: map[int]suspect{}}
	s.origins = append(s.origins, src.Relays...)
	if src.Direct || len(src.Relays) == 0 {
		s.origins = append(s.origins, "")
	}
	s.h = f.track(a, n, part, append(bitset(nil), prog.Done...), false)
	s.h.mu.Lock()
	s.h.fetching, s.h.pending = true, newBitset(n)
	s.h.mu.Unlock()
	defer func() {
		s.h.mu.Lock()
		s.h.fetching = false
		s.h.mu.Unlock()
		f.account(a, s.bytes, src.Office)
	}()
	if s.prog.Done.count() < n {
		if err := s.run(ctx); err != nil {
			if isNoSpace(err) {
				// The disk is full: the partial download's bytes go back,
				// so that the agent's state (the report saying so) can
				// still be written. Peers are no longer offered its chunks.
				s.h.mu.Lock()
				s.h.have = newBitset(n)
				s.h.mu.Unlock()
				fh.Close()
				prog.remove() // the sidecar first: it speaks for the partial
				os.Remove(part)
				return fmt.Errorf("disk full; partial download removed: %w", err)
			}
			s.mu.Lock()
			if s.unsaved > 0 {
				s.prog.save(false)
			}
			s.mu.Unlock()
			return err
		}
	}
	// Every chunk checked; the whole hash is checked once more, since that
	// is what the policy names.
	ok, err := f.verifyFile(ctx, part, a)
	if ctx.Err() != nil {
		return ctx.Err() // stopped while checking: what is on disk stays
	}
	if err != nil || !ok {
		prog.remove()
		os.Remove(part)
		s.h.mu.Lock()
		s.h.have = newBitset(n)
		s.h.mu.Unlock()
		return fmt.Errorf("%w: every chunk checked but the whole file did not (err %v); starting over", ErrMismatch, err)
	}
	final := filepath.Join(f.dir, sha)
	s.h.mu.Lock()
	err = fsutil.Rename(part, final)
	if err == nil {
		s.h.path, s.h.complete = final, true
	}
	s.h.mu.Unlock()
	if err != nil {
		return err
	}
	prog.remove()
	return nil
}

func (s *session) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if s.office != nil {
		members := s.office.Peers()
		s.discover(ctx, members)
		if len(members) > 0 && !s.someoneHasAll() {
			// Peers starting the same download at the same time announce it
			// within a gossip round or two; shares are fairer once they have.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(s.t.Settle):
			}
			s.discover(ctx, s.office.Peers())
		}
		go s.refresher(ctx)
	}
	var wg sync.WaitGroup
	for range s.t.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.work(ctx)
		}()
	}
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prog.Done.count() == s.n {
		return nil
	}
	if s.fatal != nil {
		return s.fatal
	}
	return ctx.Err()
}

func (s *session) someoneHasAll() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.peers {
		if p.have != nil && p.have.count() == s.n && !s.dropped[p.Name] {
			return true
		}
	}
	return false
}

// wake tells waiting workers to plan again; call with s.mu held.
func (s *session) wake() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *session) work(ctx context.Context) {
	for {
		i, src, cctx, ok := s.next(ctx)
		if !ok {
			return
		}
		err := s.fetchChunk(cctx, i, src)
		s.finish(i, src, err)
	}
}

// next picks a chunk and where to get it: from a peer that has it, else
// from the relay if it is this member's share of the relay's work (or
// nobody else is downloading, or nothing has moved for a while), else it
// waits for peers to get more.
func (s *session) next(ctx context.Context) (int, source, context.Context, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.prog.Done.count() == s.n || s.fatal != nil || ctx.Err() != nil {
			return 0, source{}, nil, false
		}
		now := time.Now()
		// From a peer: the least busy one that has the chunk.
		for k := range s.n {
			i := (s.rot + k) % s.n
			if s.prog.Done.has(i) || s.inflight[i] != nil {
				continue
			}
			var best *peerState
			for _, p := range s.peers {
				if s.dropped[p.Name] || !p.have.has(i) || p.inflight >= s.t.PerPeer || now.Before(p.until) {
					continue
				}
				if best == nil || p.inflight < best.inflight || (p.inflight == best.inflight && rand.IntN(2) == 0) {
					best = p
				}
			}
			if best != nil {
				best.inflight++
				return i, source{kind: "peer", name: best.Name, peer: best}, s.start(ctx, i, false), true
			}
		}
		// From the relay or the file server.
		// Two at a time keep a LAN link full; every chunk in flight is
		// bytes in socket buffers that a killed agent asks for again.
		// stalled: no chunk has come here for StallAfter, whatever peers
		// say of themselves.
		if len(s.origins) > 0 && s.originBusy < s.t.PerOrigin {
			stalled := now.Sub(s.lastProgress) > s.t.StallAfter
			for k := range s.n {
				i := (s.rot + k) % s.n
				if s.prog.Done.has(i) || s.inflight[i] != nil || now.Before(s.retryAt[i]) {
					continue
				}
				if stalled || (!s.pendingAtPeer(i, now) && (len(s.fetchers) <= 1 || s.mine.has(i))) {
					s.originBusy++
					return i, s.origin(), s.start(ctx, i, true), true
				}
			}
		}
		if len(s.origins) == 0 && len(s.inflight) == 0 && !s.anyPeerUsable(now) {
			s.fatal = errors.New("no peer holds the missing chunks and the office has no relay or file server to ask")
			s.wake()
			return 0, source{}, nil, false
		}
		ch := s.changed
		s.waiting++
		s.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-ch:
		case <-time.After(s.t.Refresh):
		}
		s.mu.Lock()
		s.waiting--
	}
}

// start books chunk i in flight here, which peers see in the chunk map,
// and gives the context its fetch runs in; call with s.mu held.
func (s *session) start(ctx context.Context, i int, origin bool) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	s.inflight[i] = &flight{origin: origin, cancel: cancel}
	s.h.mu.Lock()
	s.h.pending.set(i)
	s.h.mu.Unlock()
	return ctx
}

// done books chunk i no longer in flight; call with s.mu held.
func (s *session) done(i int) {
	if fl := s.inflight[i]; fl != nil {
		fl.cancel()
		delete(s.inflight, i)
	}
	s.h.mu.Lock()
	s.h.pending.clear(i)
	s.h.mu.Unlock()
}

// yieldLocked gives up chunks this member is taking from the relay that
// a peer is fetching too, or has by now: two members that decided on the
// same chunk before they heard of each other (gossip is slower than a
// download's start on a busy machine) would have the relay send it
// twice. Of the two, the one with the higher name gives way, so exactly
// one goes on; one more than half done goes on anyway, and what it had
// is kept to be resumed from wherever the chunk comes from. Call with
// s.mu held.
func (s *session) yieldLocked() {
	if s.office == nil {
		return
	}
	self := s.office.Self()
	now := time.Now()
	for i, fl := range s.inflight {
		if !fl.origin {
			continue
		}
		_, size := s.a.ChunkRange(i)
		if s.prog.Partial[i]*2 > size {
			continue
		}
		for _, p := range s.peers {
			// A peer's word that it is fetching the chunk counts as long
			// as it holds chunks back from the relay (counts), no longer.
			if s.dropped[p.Name] || p.Name >= self || !(p.pending.has(i) && s.counts(p.Name, now) || p.have.has(i)) {
				continue
			}
			s.f.log.Debug("chunk fetched by a peer too; giving it up", "chunk", i, "peer", p.Name)
			fl.yielded = true
			fl.cancel()
			break
		}
	}
}

// pendingAtPeer tells whether a peer is fetching chunk i now: it will have
// it soon, so the relay need not send it twice.
func (s *session) pendingAtPeer(i int, now time.Time) bool {
	// A peer slow to answer is still fetching; one that left the office
	// is no longer listed, and one whose map has not grown for StallAfter
	// (died quietly, or says what is not so) holds nothing back.
	for _, p := range s.peers {
		if p.pending.has(i) && !s.dropped[p.Name] && s.counts(p.Name, now) {
			return true
		}
	}
	return false
}

// counts tells whether a member named as downloading the artifact (by its
// own chunk map, by asking this one, or by a peer's word) still takes a
// share of the relay's work and holds chunks back from the relay: for
// StallAfter after it was first named, then only while its chunk map, as
// read here, shows more chunks than ever before within StallAfter. So a
// member that says it is downloading and delivers nothing (or lies about
// what it fetches) costs the others one StallAfter, not one per chunk.
// Call with s.mu held.
func (s *session) counts(name string, now time.Time) bool {
	first, ok := s.named[name]
	if !ok {
		s.named[name] = now
		return true
	}
	if now.Sub(first) <= s.t.StallAfter {
		return true
	}
	p := s.peers[name]
	return p != nil && !p.grewAt.IsZero() && now.Sub(p.grewAt) <= s.t.StallAfter
}

func (s *session) anyPeerUsable(now time.Time) bool {
	for _, p := range s.peers {
		if !s.dropped[p.Name] && (p.fetching || p.have.count() > 0 || now.Before(p.until)) {
			return true
		}
	}
	return false
}

func (s *session) origin() source {
	o := s.origins[s.originAt%len(s.origins)]
	if o == "" {
		return source{kind: "file_server"}
	}
	return source{kind: "relay", name: o}
}

// finish books the outcome of one chunk.
func (s *session) finish(i int, src source, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	yielded := s.inflight[i] != nil && s.inflight[i].yielded
	s.done(i)
	if src.peer != nil {
		src.peer.inflight--
	} else {
		s.originBusy--
	}
	defer s.wake()
	if err == nil {
		s.lastProgress = time.Now()
		if src.peer == nil {
			s.originFails = 0
		}
		return
	}
	if yielded || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return
	}
	switch {
	case isNoSpace(err):
		// Nobody's fault, and no other source helps: the download stops.
		if s.fatal == nil {
			s.fatal = err
		}
	case errors.Is(err, errResumedBad):
		// Which bytes were bad is not known yet: nobody is blamed, and the
		// chunk comes whole next (fetchChunk then judges the peer that
		// sent the first part).
		s.f.log.Debug("resumed chunk failed its hash; fetching it whole", "chunk", i, "source", src.name)
	case src.peer != nil && errors.Is(err, errBadChunk):
		s.badPeerLocked(src.name, i)
	case src.peer != nil && errors.Is(err, errNotThere):
		src.peer.have.clear(i)
	case src.peer != nil && errors.Is(err, errBusy):
		src.peer.until = time.Now().Add(200 * time.Millisecond)
	case src.peer != nil && errors.Is(err, errStalled):
		// Asked again at once, it would hold another chunk as long.
		s.f.log.Debug("chunk from office peer stalled", "peer", src.name, "chunk", i, "err", err)
		src.peer.until = time.Now().Add(s.t.BadFor)
	case src.peer != nil:
		s.f.log.Debug("chunk from office peer", "peer", src.name, "chunk", i, "err", err)
		src.peer.until = time.Now().Add(2 * time.Second)
	default:
		s.f.log.Debug("chunk from "+src.kind, "source", src.name, "chunk", i, "err", err)
		s.originFails++
		// The next relay, or the file server — once for a source that
		// failed, not once per chunk that was in flight from it (which
		// would skip a healthy relay and go to the file server).
		if cur := s.origin(); cur.kind == src.kind && cur.name == src.name {
			s.originAt++
		}
		if src.kind == "file_server" {
			s.presigned = "" // it may have expired: ask for a fresh one
		}
		s.retryAt[i] = time.Now().Add(time.Duration(s.originFails) * 200 * time.Millisecond)
		if s.originFails >= 3*len(s.origins)+2 {
			s.fatal = fmt.Errorf("%s %s: %w", src.kind, src.name, err)
		}
	}
}

// badPeerLocked drops a peer that sent bytes of chunk i failing its
// signed hash: it is broken or hostile, so it is not asked again for this
// artifact, nor for a while for any, and the coordinator hears of it
// (once: other chunks may have been in flight from it). Call with s.mu
// held.
func (s *session) badPeerLocked(name string, i int) {
	s.f.badChunks.WithLabelValues(s.src.Office).Inc()
	s.f.addBad(s.a.GetSha256())
	if s.dropped[name] {
		return
	}
	s.dropped[name] = true
	s.f.dropPeer(name, s.t.BadFor)
	what := fmt.Sprintf("served chunk %d of artifact %s that failed its hash", i, s.a.GetSha256()[:12])
	s.f.log.Warn("office peer served a bad chunk; dropped", "peer", name, "artifact", s.a.GetSha256()[:12], "chunk", i)
	s.office.BadPeer(name, what)
	s.fetchersLocked()
}

var (
	errNotThere   = errors.New("the peer does not have the chunk")
	errBusy       = errors.New("the peer is busy")
	errResumedBad = errors.New("a resumed chunk failed its hash")
	errStalled    = errors.New("the peer sent less than a block in StallAfter")
)

// fetchChunk gets chunk i (or the rest of it, if a killed agent had
// part of it) from src, writes it at its offset and checks its hash.
func (s *session) fetchChunk(ctx context.Context, i int, src source) error {
	off, size := s.a.ChunkRange(i)
	s.mu.Lock()
	start := s.prog.Partial[i]
	prefixFrom, known := s.partFrom[i] // who sent those bytes, if this run knows
	s.mu.Unlock()
	h, prefix := sha256.New(), sha256.New()
	if start > 0 {
		if _, err := io.Copy(io.MultiWriter(h, prefix), io.NewSectionReader(s.file, off, start)); err != nil {
			start = 0
			h.Reset()
		}
	}
	// A peer is on the office's network: one that takes longer than
	// StallAfter for a block of the chunk (one byte a minute, or nothing
	// after its headers) gives the chunk up to another source. Nothing
	// else would: the peer client has no overall timeout, and each byte
	// that comes resets an idle one.
	var stalled atomic.Bool
	var watch *time.Timer
	if src.peer != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		watch = time.AfterFunc(s.t.StallAfter, func() {
			stalled.Store(true)
			cancel()
		})
		defer watch.Stop()
	}
	req, err := s.request(ctx, i, src, off, start, size)
	if err != nil {
		return err
	}
	client := s.f.client
	if src.peer != nil {
		client = s.office.Client()
	}
	resp, err := client.Do(req)
	if err != nil {
		if stalled.Load() {
			return fmt.Errorf("chunk %d: %w", i, errStalled)
		}
		return redactURL(err)
	}
	defer resp.Body.Close()
	if src.peer != nil {
		// Only what the member named says of itself is taken.
		if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 || resp.TLS.PeerCertificates[0].Subject.CommonName != src.name {
			return fmt.Errorf("peer at %s is not %s", src.peer.URL, src.name)
		}
		s.notePeer(src.peer, resp)
	}
	switch {
	case resp.StatusCode == http.StatusPartialContent:
	case resp.StatusCode == http.StatusOK && src.peer != nil && start == 0:
	case resp.StatusCode == http.StatusNotFound && src.peer != nil:
		return errNotThere
	case resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests:
		return errBusy
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	buf := make([]byte, 256<<10)
	got := start
	var readErr error
	// Bytes count as received as each read brings them, not a block at a
	// time: a slow link that still delivers is progress (the agent's
	// watchdog).
	body := io.TeeReader(resp.Body, counter{&s.f.received})
	for got < size && readErr == nil {
		k, err := io.ReadFull(body, buf[:min(int64(len(buf)), size-got)])
		readErr = err
		if k == 0 {
			break
		}
		if _, err := s.file.WriteAt(buf[:k], off+got); err != nil {
			return fmt.Errorf("write chunk %d: %w", i, err)
		}
		h.Write(buf[:k])
		got += int64(k)
		s.arrived(i, src, got, int64(k))
		if watch != nil && readErr == nil {
			watch.Reset(s.t.StallAfter)
		}
	}
	if got < size {
		if stalled.Load() {
			return fmt.Errorf("chunk %d: %d of %d bytes: %w", i, got, size, errStalled)
		}
		if readErr == nil {
			readErr = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("chunk %d: %d of %d bytes: %w", i, got, size, readErr)
	}
	if !bytes.Equal(h.Sum(nil), s.a.ChunkHash(i)) {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.prog.Partial, i)
		delete(s.partFrom, i)
		if start > 0 {
			// Which part was bad is unknown: nobody is blamed yet; the
			// chunk is fetched again whole, and the first part judged
			// then.
			if known && prefixFrom != "" && prefixFrom != "*" {
				s.suspect[i] = suspect{peer: prefixFrom, n: start, sum: prefix.Sum(nil)}
			}
			return fmt.Errorf("chunk %d: %w", i, errResumedBad)
		}
		return errBadChunk
	}
	// The chunk's bytes reach the disk before the sidecar says they did.
	if err := s.file.Sync(); err != nil {
		return fmt.Errorf("sync chunk %d: %w", i, err)
	}
	s.mu.Lock()
	s.prog.Done.set(i)
	delete(s.prog.Partial, i)
	delete(s.partFrom, i)
	sus, judge := s.suspect[i]
	delete(s.suspect, i)
	s.unsaved = 0
	err = s.prog.save(true)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if judge && start == 0 {
		// The chunk checks now: the part a peer sent before, which the
		// resumed chunk failed with, was bad if it differs.
		ph := sha256.New()
		if _, err := io.Copy(ph, io.NewSectionReader(s.file, off, sus.n)); err == nil && !bytes.Equal(ph.Sum(nil), sus.sum) {
			s.mu.Lock()
			s.badPeerLocked(sus.peer, i)
			s.mu.Unlock()
		}
	}
	s.h.mu.Lock()
	s.h.have.set(i)
	s.h.mu.Unlock()
	return nil
}

// arrived books bytes of chunk i as they come, and saves how far chunks
// in flight got now and then.
func (s *session) arrived(i int, src source, got, k int64) {
	s.f.bytes.WithLabelValues(src.kind, s.src.Office).Add(float64(k))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bytes[src.kind] += k
	from := src.name
	if src.peer == nil {
		from = ""
	}
	if prev, ok := s.partFrom[i]; !ok {
		s.partFrom[i] = from
	} else if prev != from {
		s.partFrom[i] = "*"
	}
	s.prog.Partial[i] = got
	s.unsaved += k
	s.lastProgress = time.Now()
	if s.unsaved >= progressEvery {
		s.unsaved = 0
		if err := s.prog.save(false); err != nil {
			s.f.log.Debug("save download progress", "err", err)
		}
	}
}

func (s *session) request(ctx context.Context, i int, src source, off, start, size int64) (*http.Request, error) {
	var url string
	switch src.kind {
	case "peer":
		url = strings.TrimRight(src.peer.URL, "/") + PeerChunksPath + s.a.GetSha256() + "/" + strconv.Itoa(i)
		off = 0 // a peer's ranges are within the chunk
	case "relay":
		url = strings.TrimRight(src.name, "/") + "/v1/blobs/sha256/" + s.a.GetSha256()
	default:
		s.mu.Lock()
		url = s.presigned
		s.mu.Unlock()
		if url == "" {
			u, err := s.f.presign.Presign(ctx, s.a.GetSha256())
			if err != nil {
				return nil, fmt.Errorf("presign: %w", err)
			}
			s.mu.Lock()
			s.presigned, url = u, u
			s.mu.Unlock()
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, redactURL(err)
	}
	if src.kind != "peer" || start > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off+start, off+size-1))
	}
	return req, nil
}

// notePeer takes the chunk map a peer sends with every answer.
func (s *session) notePeer(p *peerState, resp *http.Response) {
	have := decodeMap(resp.Header.Get(HeaderHave), s.n)
	if have == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// What a peer says it has is not progress here (only chunks that come
	// and check are), but a map showing more than ever before tells that
	// the peer is getting somewhere.
	if c := have.count(); c > p.most {
		p.most, p.grewAt = c, time.Now()
	}
	p.have, p.seen = have, time.Now()
	p.fetching = resp.Header.Get(HeaderFetching) == "1"
	p.pending = decodeMap(resp.Header.Get(HeaderPending), s.n)
	now := time.Now()
	for _, name := range parseFetchers(resp.Header.Get(HeaderFetchers)) {
		if _, known := s.heard[name]; name != s.selfLocked() && (known || len(s.heard) < maxFetchers) && s.office.IsMember(name) {
			s.heard[name] = now
		}
	}
	s.yieldLocked()
}

func (s *session) selfLocked() string {
	if s.office == nil {
		return ""
	}
	return s.office.Self()
}

// parseFetchers reads a peer's HeaderFetchers: at most maxFetchers
// names, each a plausible member id; anything else in it is ignored.
func parseFetchers(v string) []string {
	var out []string
	for name := range strings.SplitSeq(v, ",") {
		if len(out) == maxFetchers {
			break
		}
		if validMemberName(name) {
			out = append(out, name)
		}
	}
	return out
}

func validMemberName(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// probeMembers is how many members a download asks directly, at its start
// and once more when it has settled, besides those gossip lists as
// holding the artifact.
const probeMembers = 4

// discover refreshes what the holders gossip lists have, and asks a few
// other members at random as well. On a busy machine gossip carries a
// member's holdings later than a download starts; asked directly, a
// member that is downloading the same artifact says so (and who else it
// knows is), and one that is about to remembers the asker as a fetcher.
func (s *session) discover(ctx context.Context, members []Peer) {
	s.refresh(ctx)
	s.mu.Lock()
	var cand []*peerState
	for _, p := range members {
		if s.peers[p.Name] == nil && !s.probed[p.Name] && !s.dropped[p.Name] {
			cand = append(cand, &peerState{Peer: p})
		}
	}
	rand.Shuffle(len(cand), func(i, j int) { cand[i], cand[j] = cand[j], cand[i] })
	cand = cand[:min(len(cand), probeMembers)]
	for _, p := range cand {
		s.probed[p.Name] = true
	}
	s.mu.Unlock()
	s.readMaps(ctx, cand, func(p *peerState) {
		s.mu.Lock()
		if p.fetching && p.have.count() < s.n {
			s.heard[p.Name] = time.Now()
		}
		s.mu.Unlock()
	})
	s.mu.Lock()
	s.fetchersLocked()
	s.wake()
	s.mu.Unlock()
}

// refresher reads the peers' chunk maps while the download runs and a
// worker has nothing to do: while all are busy, the maps that come with
// each chunk are enough, and an office of many members is not flooded
// with questions.
func (s *session) refresher(ctx context.Context) {
	t := time.NewTicker(s.t.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.mu.Lock()
			hungry := s.waiting > 0
			s.mu.Unlock()
			if hungry {
				s.refresh(ctx)
			}
		}
	}
}

// refresh learns which peers announce the artifact and reads their chunk
// maps; peers that have everything are not asked again.
func (s *session) refresh(ctx context.Context) {
	holders := s.office.Holders(s.a.GetSha256())
	now := time.Now()
	var ask []*peerState
	s.mu.Lock()
	live := map[string]bool{}
	for _, hp := range holders {
		if s.f.isBad(hp.Name, now) {
			s.dropped[hp.Name] = true
		}
		live[hp.Name] = true
		p := s.peers[hp.Name]
		if p == nil || p.URL != hp.URL {
			// New, or back at another address: a fresh record (its URL is
			// read without the lock).
			p = &peerState{Peer: hp}
			s.peers[hp.Name] = p
		}
		if !s.dropped[p.Name] && (p.have == nil || p.have.count() < s.n) && now.Sub(p.seen) >= s.t.Refresh {
			ask = append(ask, p)
		}
	}
	for name, p := range s.peers {
		if !live[name] && p.inflight == 0 {
			delete(s.peers, name)
		}
	}
	s.mu.Unlock()
	s.readMaps(ctx, ask, nil)
	s.mu.Lock()
	s.fetchersLocked()
	s.yieldLocked()
	s.wake()
	s.mu.Unlock()
}

// fetchersLocked recomputes who shares the relay's work: this member,
// the peers whose chunk maps say they are downloading the artifact, the
// members that asked this one about it, and the ones peers told of (each
// for a few seconds after the last word of it). A member whose gossip is
// slow to carry the others' holdings still learns of them from the first
// peer it asks, or that asks it.
func (s *session) fetchersLocked() {
	if s.office == nil {
		return
	}
	now := time.Now()
	self := s.office.Self()
	set := map[string]bool{self: true}
	complete := map[string]bool{}
	for _, p := range s.peers {
		if s.dropped[p.Name] {
			continue
		}
		if p.have.count() == s.n {
			complete[p.Name] = true
		} else if p.fetching && s.counts(p.Name, now) {
			set[p.Name] = true
		}
	}
	for _, name := range s.f.recentAskers(s.a.GetSha256(), now) {
		if !s.dropped[name] && !complete[name] && s.counts(name, now) {
			set[name] = true
		}
	}
	// First hand: what this member tells its peers.
	direct := sortedNames(set)
	for name, at := range s.heard {
		switch {
		case now.Sub(at) > askerTTL:
			delete(s.heard, name)
		case !s.dropped[name] && !complete[name] && s.counts(name, now):
			set[name] = true
		}
	}
	s.h.mu.Lock()
	s.h.fetchers = direct
	s.h.mu.Unlock()
	all := sortedNames(set)
	if slices.Equal(all, s.fetchers) {
		return
	}
	s.fetchers = all
	s.mine = shareOf(s.a.GetSha256(), self, all, s.n)
}

func sortedNames(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for name := range set {
		out = append(out, name)
	}
	sort.Strings(out)
	if len(out) > maxFetchers {
		out = out[:maxFetchers]
	}
	return out
}

// shareOf is self's share of the relay's work on an artifact of n chunks
// among fetchers: the chunks for which self ranks first by a hash of the
// member, the artifact and the chunk (rendezvous hashing). Members that
// know of different sets of fetchers then still agree on most chunks: a
// member missing from one's list moves only the chunks it would have
// ranked first for, where splitting the list round-robin would move
// almost all of them.
func shareOf(sha, self string, fetchers []string, n int) bitset {
	mine := newBitset(n)
	for i := range n {
		best, bestScore := "", uint64(0)
		for _, f := range fetchers {
			h := fnv.New64a()
			h.Write([]byte(f))
			h.Write([]byte{0})
			h.Write([]byte(sha))
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], uint64(i))
			h.Write(b[:])
			if score := mix64(h.Sum64()); best == "" || score > bestScore {
				best, bestScore = f, score
			}
		}
		if best == self {
			mine.set(i)
		}
	}
	return mine
}

// mix64 is MurmurHash3's finaliser. FNV-1a alone ends on the chunk's
// bytes, which the members' hashes share, and so ranks two members in
// much the same order for every chunk: one member drew 26 of 32 chunks
// from the relay where each of two should draw about 16.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// readMaps reads the chunk maps of ps at once, and gives each peer to
// then, if not nil, once its map is read.
func (s *session) readMaps(ctx context.Context, ps []*peerState, then func(*peerState)) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() {
			s.readMap(ctx, p)
			if then != nil {
				then(p)
			}
		})
	}
	wg.Wait()
}

func (s *session) readMap(ctx context.Context, p *peerState) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(p.URL, "/")+PeerChunksPath+s.a.GetSha256(), nil)
	if err != nil {
		return
	}
	resp, err := s.office.Client().Do(req)
	if err != nil {
		s.mu.Lock()
		p.until = time.Now().Add(2 * time.Second)
		s.mu.Unlock()
		return
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 || resp.TLS.PeerCertificates[0].Subject.CommonName != p.Name {
		return
	}
	if resp.StatusCode == http.StatusNotFound {
		s.mu.Lock()
		p.have, p.fetching = newBitset(s.n), false
		s.mu.Unlock()
		return
	}
	if resp.StatusCode == http.StatusOK {
		s.notePeer(p, resp)
	}
}
