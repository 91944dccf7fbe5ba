// Package fetch gets an artifact onto the agent's disk and proves it is the
// one the signed policy names: from the local cache, else the office's
// relays in order, else the file server through a presigned URL. Nothing on
// the path is trusted: bytes are checked against the SHA-256 and size, and
// interrupted downloads resume by range.
//
// An artifact whose policy entry carries chunk hashes is fetched in chunks
// from several office peers and the relay at once (chunked.go), each chunk
// checked as it arrives, and its checked chunks are offered to peers in
// turn (held.go; the HTTP side is the agent's). It does not serve anything
// itself, nor know about gossip: the Office interface tells it who holds
// what.
package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// Presigner asks the coordinator for a short-lived file-server URL.
type Presigner interface {
	Presign(ctx context.Context, sha256 string) (string, error)
}

// Sources says where content may come from right now.
type Sources struct {
	Relays []string // base URLs, e.g. http://10.1.0.5:8090
	Direct bool     // the file server through presigned URLs
	// Office labels the bytes fetched, so that the bytes by source add up
	// per office across agents.
	Office string
	// Peers is the office's other members, for chunked artifacts; nil
	// when roaming or outside any office's gossip.
	Peers Office
}

// ErrMismatch is returned when bytes do not match the policy.
var ErrMismatch = errors.New("artifact bytes do not match the policy")

// Fetcher downloads artifacts into a content-addressed cache.
type Fetcher struct {
	dir       string
	presign   Presigner
	client    *http.Client
	log       *slog.Logger
	bytes     *prometheus.CounterVec
	badChunks *prometheus.CounterVec
	gcBytes   prometheus.Counter
	// hashed counts bytes read from disk to hash them (Progress)
	hashed atomic.Uint64
	// received counts artifact bytes as they arrive, from any source
	// (Received).
	received atomic.Uint64
	tuning   Tuning
	// freeSpace is the space left on dir's file system; false: unknown.
	freeSpace func(dir string) (uint64, bool)

	hmu        sync.Mutex
	held       map[string]*held // artifacts with chunks to offer peers
	seq        uint64
	onHoldings func()
	locks      map[string]*sync.Mutex          // one download of an artifact at a time
	askers     map[string]map[string]time.Time // sha → members that asked about it → when
	used       map[string]time.Time            // sha → when a policy last named it or a peer was last served it (gc.go)
	usedDirty  bool

	smu        sync.Mutex
	stats      map[string]*artifactStats // per-artifact figures
	statsDirty bool
	bad        map[string]time.Time // peers that served bad chunks → until when they are not asked
}

var hexSHA = regexp.MustCompile(`^[0-9a-f]{64}$`)

// New makes a fetcher caching in dir.
func New(dir string, presign Presigner, client *http.Client, logger *slog.Logger, reg prometheus.Registerer) (*Fetcher, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create content cache: %w", err)
	}
	// What writes of the cache's bookkeeping cut short by a kill left:
	// nothing of this fetcher's writes before New returns.
	fsutil.RemoveOld(dir, fsutil.WriteLeftover, 0)
	f := &Fetcher{dir: dir, presign: presign, client: client, log: logger.With("component", "fetch"),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_agent_fetched_bytes_total",
			Help: "Artifact bytes downloaded, by source (peer, relay, file_server) and the office the agent was in."},
			[]string{"source", "office"}),
		badChunks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_agent_peer_bad_chunks_total",
			Help: "Chunks office peers sent that failed their hash (the peer is dropped and reported), by office."},
			[]string{"office"}),
		gcBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_agent_content_gc_bytes_total",
			Help: "Bytes of cached artifacts (and partial downloads) removed because no policy named them any more."}),
		tuning:    Tuning{}.withDefaults(),
		freeSpace: diskFree,
		held:      map[string]*held{}, locks: map[string]*sync.Mutex{}, askers: map[string]map[string]time.Time{},
		used:  map[string]time.Time{},
		stats: map[string]*artifactStats{}, bad: map[string]time.Time{},
	}
	for _, c := range []prometheus.Collector{f.bytes, f.badChunks, f.gcBytes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	f.loadStats()
	f.loadUsed()
	return f, nil
}

// Received is how many artifact bytes have arrived so far, counted as
// they come: a download that goes on, however long, keeps it growing.
func (f *Fetcher) Received() uint64 { return f.received.Load() }

// Progress grows with the fetcher's work: bytes that arrive, and bytes
// read from disk to check them (the agent's watchdog: checking a large
// artifact on a slow disk is no hang).
func (f *Fetcher) Progress() uint64 { return f.received.Load() + f.hashed.Load() }

// counter counts what is written through it.
type counter struct{ n *atomic.Uint64 }

func (c counter) Write(p []byte) (int, error) {
	c.n.Add(uint64(len(p)))
	return len(p), nil
}

// Get returns the path of a verified local copy of a.
func (f *Fetcher) Get(ctx context.Context, a *wire.Artifact, src Sources) (string, error) {
	sha := a.GetSha256()
	if !hexSHA.MatchString(sha) {
		return "", fmt.Errorf("artifact hash %q is not a SHA-256", sha)
	}
	final := filepath.Join(f.dir, sha)
	lock := f.lock(sha)
	lock.Lock()
	defer lock.Unlock()
	n, chunked, cerr := a.Chunks()
	if ok, err := f.verifyFile(ctx, final, a); err == nil && ok {
		if chunked {
			all := newBitset(n)
			for i := range n {
				all.set(i)
			}
			f.track(a, n, final, all, true)
		}
		return final, nil
	}
	if cerr != nil {
		f.log.Warn("artifact's chunk list does not fit it; fetching it whole", "artifact", sha[:12], "err", cerr)
	}
	// Not a byte unless it fits: the state lives on the same disk.
	if err := f.checkSpace(a, chunked, n); err != nil {
		return "", fmt.Errorf("fetch %s: %w", sha[:12], err)
	}
	if chunked {
		if err := f.getChunked(ctx, a, n, src); err != nil {
			return "", fmt.Errorf("fetch %s: %w", sha[:12], err)
		}
		return final, nil
	}
	var errs []error
	for _, relay := range src.Relays {
		url := strings.TrimRight(relay, "/") + "/v1/blobs/sha256/" + sha
		err := f.download(ctx, url, a, "relay", src.Office)
		if err == nil {
			return final, nil
		}
		errs = append(errs, fmt.Errorf("relay %s: %w", relay, err))
		if ctx.Err() != nil {
			return "", errors.Join(errs...)
		}
		if isNoSpace(err) {
			// Another source would fill the disk just the same.
			return "", fmt.Errorf("fetch %s: %w", sha[:12], errors.Join(errs...))
		}
	}
	if src.Direct || len(src.Relays) == 0 {
		url, err := f.presign.Presign(ctx, sha)
		if err == nil {
			err = f.download(ctx, url, a, "file_server", src.Office)
		}
		if err == nil {
			return final, nil
		}
		errs = append(errs, fmt.Errorf("file server: %w", err))
	}
	return "", fmt.Errorf("fetch %s: %w", sha[:12], errors.Join(errs...))
}

// verifyFile hashes the file at path and tells whether it is a. It stops
// when ctx ends, with ctx's error.
func (f *Fetcher) verifyFile(ctx context.Context, path string, a *wire.Artifact) (bool, error) {
	fh, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer fh.Close()
	h := sha256.New()
	n, err := io.Copy(h, f.reading(ctx, fh))
	if err != nil {
		return false, err
	}
	return n == a.GetSize() && hex.EncodeToString(h.Sum(nil)) == a.GetSha256(), nil
}

// reading is r, read for hashing what is on disk: it stops when ctx
// ends (a stop is not held up by gigabytes on a slow disk), and what it
// reads counts as work done (Progress).
func (f *Fetcher) reading(ctx context.Context, r io.Reader) io.Reader {
	return &diskReader{ctx: ctx, r: r, n: &f.hashed}
}

type diskReader struct {
	ctx context.Context
	r   io.Reader
	n   *atomic.Uint64
}

func (d *diskReader) Read(p []byte) (int, error) {
	if err := d.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := d.r.Read(p)
	d.n.Add(uint64(n))
	return n, err
}

// download appends to the partial file from where it stopped, verifies,
// and moves the result into place.
func (f *Fetcher) download(ctx context.Context, url string, a *wire.Artifact, source, office string) error {
	part := filepath.Join(f.dir, a.GetSha256()+".part")
	h := sha256.New()
	have, err := f.hashPartial(ctx, part, h, a)
	if err != nil {
		return err
	}
	if have > 0 && have == a.GetSize() {
		// Every byte came and checked before a kill (the sync of a large
		// artifact takes a while): only the move into place is left.
		return f.install(part, a)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return redactURL(err)
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return redactURL(err)
	}
	defer resp.Body.Close()
	flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
	case resp.StatusCode == http.StatusOK:
		// The source ignored the range: start over.
		flags |= os.O_TRUNC
		h.Reset()
		have = 0
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		os.Remove(part)
		return fmt.Errorf("source refused to resume (416); starting over next time")
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	out, err := os.OpenFile(part, flags, 0o600)
	if err != nil {
		return err
	}
	// Read at most one byte more than the policy allows, to notice excess.
	n, err := io.Copy(io.MultiWriter(out, h, counter{&f.received}), io.LimitReader(resp.Body, a.GetSize()-have+1))
	f.bytes.WithLabelValues(source, office).Add(float64(n))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil && isNoSpace(err) {
		// The disk is full: its bytes go back, so that the agent's state
		// (the report saying so) can still be written.
		os.Remove(part)
		return fmt.Errorf("disk full after %d bytes; partial download removed: %w", have+n, err)
	}
	if err != nil {
		return fmt.Errorf("download interrupted after %d bytes (will resume): %w", have+n, err)
	}
	total := have + n
	got := hex.EncodeToString(h.Sum(nil))
	if total != a.GetSize() || got != a.GetSha256() {
		os.Remove(part)
		return fmt.Errorf("%w: got %d bytes with sha256 %s, want %d bytes with sha256 %s", ErrMismatch, total, got[:12], a.GetSize(), a.GetSha256()[:12])
	}
	return f.install(part, a)
}

// install syncs a partial download whose bytes checked and moves it into
// place.
func (f *Fetcher) install(part string, a *wire.Artifact) error {
	fh, err := os.Open(part)
	if err == nil {
		err = fh.Sync()
		fh.Close()
	}
	if err != nil {
		if isNoSpace(err) {
			os.Remove(part)
		}
		return err
	}
	return fsutil.Rename(part, filepath.Join(f.dir, a.GetSha256()))
}

// hashPartial hashes the partial download of a into h and returns its
// length: a's size only when it is all of a, checked.
func (f *Fetcher) hashPartial(ctx context.Context, part string, h hash.Hash, a *wire.Artifact) (int64, error) {
	size := a.GetSize()
	fh, err := os.Open(part)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	n, err := io.Copy(h, f.reading(ctx, fh))
	if err != nil {
		return 0, err
	}
	if n == size && hex.EncodeToString(h.Sum(nil)) == a.GetSha256() {
		return n, nil
	}
	if n >= size {
		// Nothing left to ask for, or more than allowed: start over.
		fh.Close()
		os.Remove(part)
		h.Reset()
		return 0, nil
	}
	return n, nil
}

func (f *Fetcher) lock(sha string) *sync.Mutex {
	f.hmu.Lock()
	defer f.hmu.Unlock()
	l := f.locks[sha]
	if l == nil {
		l = &sync.Mutex{}
		f.locks[sha] = l
	}
	return l
}

// Has reports whether a verified copy is cached.
func (f *Fetcher) Has(a *wire.Artifact) bool {
	ok, err := f.verifyFile(context.Background(), filepath.Join(f.dir, a.GetSha256()), a)
	return err == nil && ok
}

// redactURL takes the query out of the URL net/http quotes in err: a
// presigned URL's query is a credential for the artifact until it expires
// (its signature, and a session token with temporary credentials), and
// errors are logged and reported to the coordinator.
func redactURL(err error) error {
	var ue *neturl.Error
	if !errors.As(err, &ue) {
		return err
	}
	clean := ue.URL
	if u, perr := neturl.Parse(ue.URL); perr == nil {
		if u.RawQuery != "" {
			u.RawQuery = "REDACTED"
		}
		u.User, u.Fragment = nil, ""
		clean = u.String()
	} else if i := strings.IndexAny(clean, "?#"); i >= 0 {
		clean = clean[:i]
	}
	return &neturl.Error{Op: ue.Op, URL: clean, Err: ue.Err}
}
