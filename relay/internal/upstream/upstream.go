// Package upstream reads artifacts from the file server, any S3-compatible
// store, with minio-go: it is the relay cache's Upstream. The read-only
// credentials, endpoint and bucket come from a CredentialSource, either fixed
// in the relay's config or short-lived ones that the coordinator issues; the
// latter are fetched again before they expire, and a changed endpoint is
// picked up by building a new client.
//
// It does not verify what it reads (the cache does), cache anything, or write
// to the file server.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/outposthq/outpost/pkg/wire"
	"github.com/outposthq/outpost/relay/internal/cache"
)

// KeyPrefix is where artifacts live in the bucket: KeyPrefix + lower-case
// hex SHA-256.
const KeyPrefix = "sha256/"

// refreshShare is the part of a credential's remaining lifetime after which
// it is replaced, so that no request is signed with one about to expire.
const refreshShare = 0.8

// retryAfterFailure is how long a failed fetch of credentials is not
// repeated for requests, so that an unreachable coordinator is not asked on
// every request: while valid credentials are held they are used meanwhile,
// and without them the requests fail at once with the fetch's error. Every
// failure in a row doubles the pause before the next try, up to
// maxRetryAfterFailure, except that a request that finds no valid
// credentials tries again after retryAfterFailure.
const (
	retryAfterFailure    = 5 * time.Second
	maxRetryAfterFailure = 5 * time.Minute
)

// credentialTimeout bounds one fetch of credentials. The coordinator's link
// waits for a connection as long as it is let, and the cache's fetches have
// no deadline (a pinned artifact's pre-stage waits for nobody): without it,
// a fetch whose credentials had expired waited for as long as the
// coordinator stayed away, and its clients with it. A variable for tests.
var credentialTimeout = 20 * time.Second

// maxFileServerTries is how many times the relay's client tries one
// request to the file server: a file server that takes connections and
// never answers fails a read within minutes, not ten.
const maxFileServerTries = 3

// CredentialSource tells where the file server is and how to read it. A
// response with ExpiresUnix 0 never expires.
type CredentialSource interface {
	FileServer(ctx context.Context) (*wire.FileServerResponse, error)
}

// FetchFunc is a CredentialSource backed by a call, typically the
// coordinator's file-server exchange over QUIC.
type FetchFunc func(ctx context.Context) (*wire.FileServerResponse, error)

// FileServer calls f.
func (f FetchFunc) FileServer(ctx context.Context) (*wire.FileServerResponse, error) { return f(ctx) }

// Static is a CredentialSource with fixed credentials from the relay's
// config, for sites that run without coordinator-issued ones.
type Static struct {
	Endpoint     string // host:port, no scheme
	Secure       bool   // https
	Bucket       string
	AccessKey    string
	SecretKey    string
	SessionToken string
	Region       string // empty: asked from the server
}

// Validate says what is missing or malformed.
func (s Static) Validate() error {
	return validate(&wire.FileServerResponse{
		Endpoint: s.Endpoint, Bucket: s.Bucket, AccessKey: s.AccessKey, SecretKey: s.SecretKey,
	})
}

// FileServer returns the fixed credentials; they never expire.
func (s Static) FileServer(context.Context) (*wire.FileServerResponse, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &wire.FileServerResponse{
		Endpoint: s.Endpoint, Secure: s.Secure, Bucket: s.Bucket, AccessKey: s.AccessKey,
		SecretKey: s.SecretKey, SessionToken: s.SessionToken, Region: s.Region,
	}, nil
}

func validate(r *wire.FileServerResponse) error {
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"endpoint", r.GetEndpoint()}, {"bucket", r.GetBucket()},
		{"access key", r.GetAccessKey()}, {"secret key", r.GetSecretKey()},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("file server: no %s given", strings.Join(missing, ", "))
	}
	if strings.Contains(r.GetEndpoint(), "/") {
		return fmt.Errorf("file server endpoint %q: want host:port without scheme or path (use secure for https)", r.GetEndpoint())
	}
	return nil
}

// Option changes how New builds an Upstream.
type Option func(*Upstream)

// WithTransport sets the HTTP transport of the S3 client, e.g. to trust a
// private CA or to observe requests in tests.
func WithTransport(rt http.RoundTripper) Option { return func(u *Upstream) { u.transport = rt } }

// Upstream implements cache.Upstream. It is safe for concurrent use.
type Upstream struct {
	src       CredentialSource
	logger    *slog.Logger
	transport http.RoundTripper
	now       func() time.Time
	after     func(time.Duration) <-chan time.Time

	refreshing chan struct{} // a one-slot lock that waiters can give up on
	wake       chan struct{} // tells Run that new credentials came

	mu        sync.Mutex
	cur       *wire.FileServerResponse
	gen       uint64    // bumped by every new response
	refreshAt time.Time // zero: never
	forced    bool      // the file server refused cur: refresh now
	keeping   bool      // Run refreshes valid credentials; requests need not wait for it
	failures  int       // fetches failed in a row
	failErr   error     // the last failure, while no valid credentials are held
	failedAt  time.Time
	client    *minio.Client
	clientFor endpoint // what client was built for
}

type endpoint struct {
	host   string
	secure bool
	region string
}

// New returns an Upstream reading with credentials from src. It contacts
// nothing until the first Open.
func New(src CredentialSource, logger *slog.Logger, opts ...Option) (*Upstream, error) {
	if src == nil {
		return nil, errors.New("upstream: no credential source given")
	}
	if logger == nil {
		return nil, errors.New("upstream: no logger given")
	}
	u := &Upstream{
		src:        src,
		logger:     logger.With("component", "upstream"),
		now:        time.Now,
		after:      time.After,
		refreshing: make(chan struct{}, 1),
		wake:       make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(u)
	}
	return u, nil
}

// Open starts reading the artifact named by hash. The size is the one the
// file server states. An artifact the bucket lacks is cache.ErrNotFound.
func (u *Upstream) Open(ctx context.Context, hash string) (io.ReadCloser, int64, error) {
	if err := cache.ValidateHash(hash); err != nil {
		return nil, 0, err
	}
	rc, size, err := u.open(ctx, hash)
	if err != nil && refusedCredentials(err) {
		// Credentials can be revoked or rotated before their stated
		// expiry; one fresh set is worth a try before giving up.
		u.logger.Info("file server refused the credentials, fetching new ones",
			"code", s3Code(err))
		u.expire()
		rc, size, err = u.open(ctx, hash)
	}
	return rc, size, err
}

// OpenRange reads n bytes of the artifact from off (to the end when n < 0);
// the size returned is the whole artifact's, from the Content-Range.
func (u *Upstream) OpenRange(ctx context.Context, hash string, off, n int64) (io.ReadCloser, int64, error) {
	if err := cache.ValidateHash(hash); err != nil {
		return nil, 0, err
	}
	if off < 0 || n == 0 {
		return nil, 0, fmt.Errorf("read %s: empty or negative range at %d+%d", hash, off, n)
	}
	rc, size, err := u.openRange(ctx, hash, off, n)
	if err != nil && refusedCredentials(err) {
		u.expire()
		rc, size, err = u.openRange(ctx, hash, off, n)
	}
	if err != nil && off == 0 && s3Code(err) == "InvalidRange" {
		// S3 refuses any range of an empty object, even one from 0; read
		// it whole instead. The cache still checks its (empty) hash.
		rc, size, err = u.openEmpty(ctx, hash, err)
	}
	return rc, size, err
}

// openEmpty reads an object whose first range the file server refused as
// invalid: that is an empty object, and any other is an error (refused).
func (u *Upstream) openEmpty(ctx context.Context, hash string, refused error) (io.ReadCloser, int64, error) {
	rc, size, err := u.openRange(ctx, hash, 0, -1)
	if err != nil {
		return nil, 0, err
	}
	if size != 0 {
		rc.Close()
		return nil, 0, refused
	}
	return rc, 0, nil
}

func (u *Upstream) openRange(ctx context.Context, hash string, off, n int64) (io.ReadCloser, int64, error) {
	client, bucket, err := u.clientAndBucket(ctx)
	if err != nil {
		return nil, 0, err
	}
	key := KeyPrefix + hash
	var opts minio.GetObjectOptions
	var rerr error
	switch {
	case n > 0:
		rerr = opts.SetRange(off, off+n-1)
	case off > 0:
		rerr = opts.SetRange(off, 0) // to the end
	} // else the whole object: no Range header
	if rerr != nil {
		return nil, 0, rerr
	}
	body, info, hdr, err := minio.Core{Client: client}.GetObject(ctx, bucket, key, opts)
	if err != nil {
		if s3Code(err) == minio.NoSuchKey {
			return nil, 0, fmt.Errorf("read %s/%s: %w", bucket, key, cache.ErrNotFound)
		}
		return nil, 0, fmt.Errorf("read %s/%s at %d from %s: %w", bucket, key, off, client.EndpointURL().Host, err)
	}
	size := info.Size
	if cr := hdr.Get("Content-Range"); cr != "" {
		start, total, err := parseContentRange(cr)
		if err != nil || start != off {
			body.Close()
			return nil, 0, fmt.Errorf("read %s/%s at %d: unusable Content-Range %q from the file server", bucket, key, off, cr)
		}
		size = total
	} else if off > 0 {
		body.Close()
		return nil, 0, fmt.Errorf("read %s/%s at %d: the file server ignored the range", bucket, key, off)
	}
	return body, size, nil
}

func (u *Upstream) open(ctx context.Context, hash string) (io.ReadCloser, int64, error) {
	client, bucket, err := u.clientAndBucket(ctx)
	if err != nil {
		return nil, 0, err
	}
	key := KeyPrefix + hash
	obj, err := client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, 0, fmt.Errorf("read %s/%s from %s: %w", bucket, key, client.EndpointURL().Host, err)
	}
	// Stat sends the GET and reads the headers, so errors surface here
	// rather than on the first Read.
	info, err := obj.Stat()
	if err != nil {
		obj.Close()
		if s3Code(err) == minio.NoSuchKey {
			return nil, 0, fmt.Errorf("read %s/%s: %w", bucket, key, cache.ErrNotFound)
		}
		return nil, 0, fmt.Errorf("read %s/%s from %s: %w", bucket, key, client.EndpointURL().Host, err)
	}
	return obj, info.Size, nil
}

// s3Code is the S3 error code in err's chain, or "".
func s3Code(err error) string {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er.Code
	}
	return ""
}

// refusedCredentials reports errors that fresh credentials may cure.
func refusedCredentials(err error) bool {
	switch s3Code(err) {
	case "ExpiredToken", "InvalidToken", "InvalidAccessKeyId", "InvalidClientTokenId",
		"SignatureDoesNotMatch", "AccessDenied":
		return true
	}
	return false
}

// clientAndBucket returns a client for the current endpoint, building a new
// one when a refresh moved the file server.
func (u *Upstream) clientAndBucket(ctx context.Context) (*minio.Client, string, error) {
	resp, _, err := u.current(ctx)
	if err != nil {
		return nil, "", err
	}
	want := endpoint{resp.GetEndpoint(), resp.GetSecure(), resp.GetRegion()}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.client == nil || u.clientFor != want {
		c, err := minio.New(want.host, &minio.Options{
			Creds:     credentials.New(&provider{u: u}),
			Secure:    want.secure,
			Region:    want.region,
			Transport: u.transport,
			// minio-go tries a request ten times by default, waiting up
			// to a minute for each answer; the cache resumes a fetch on
			// top of that.
			MaxRetries: maxFileServerTries,
		})
		if err != nil {
			return nil, "", fmt.Errorf("file server client for %s: %w", want.host, err)
		}
		if u.client != nil {
			u.logger.Info("file server moved, new client", "endpoint", want.host, "secure", want.secure)
		}
		u.client, u.clientFor = c, want
	}
	return u.client, resp.GetBucket(), nil
}

// current returns the credentials to use, fetching new ones when none are
// held or the held ones are due for refresh (unless Run refreshes them).
// Only one fetch runs at a time, and a fetch that failed moments ago
// answers for the requests that come meanwhile.
func (u *Upstream) current(ctx context.Context) (*wire.FileServerResponse, uint64, error) {
	u.mu.Lock()
	now := u.now()
	if u.usableLocked(now) {
		due := u.dueLocked(now)
		if !due || u.keeping && !u.forced {
			r, gen := u.cur, u.gen
			u.mu.Unlock()
			if due {
				u.wakeRun() // a clock that jumped: Run's timer is late
			}
			return r, gen, nil
		}
	} else if err := u.recentFailureLocked(now); err != nil {
		u.mu.Unlock()
		return nil, 0, err
	}
	u.mu.Unlock()
	return u.fetch(ctx)
}

// fetch asks the source for credentials, unless another caller got some
// (or failed to) while this one waited for its turn. On failure it keeps
// valid credentials and returns them.
func (u *Upstream) fetch(ctx context.Context) (*wire.FileServerResponse, uint64, error) {
	select {
	case u.refreshing <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("wait for file server credentials: %w", ctx.Err())
	}
	defer func() { <-u.refreshing }()
	if err := ctx.Err(); err != nil {
		// It left while it waited: asking for it now would fail, and be
		// taken for the source's failure by every caller after it.
		return nil, 0, fmt.Errorf("wait for file server credentials: %w", err)
	}
	u.mu.Lock()
	now := u.now()
	if u.usableLocked(now) && !u.dueLocked(now) { // another caller refreshed meanwhile
		defer u.mu.Unlock()
		return u.cur, u.gen, nil
	}
	if !u.usableLocked(now) {
		if err := u.recentFailureLocked(now); err != nil { // or failed to
			u.mu.Unlock()
			return nil, 0, err
		}
	}
	u.mu.Unlock()

	fctx, cancel := context.WithTimeout(ctx, credentialTimeout)
	resp, err := u.src.FileServer(fctx)
	cancel()
	if err == nil {
		err = validate(resp)
	}
	now = u.now()
	u.mu.Lock()
	defer u.mu.Unlock()
	if err != nil && ctx.Err() != nil {
		// The caller left: not the source's failure, so not kept for
		// the callers after it.
		return nil, 0, fmt.Errorf("get file server credentials: %w", ctx.Err())
	}
	if err != nil {
		return u.failedLocked(now, err)
	}
	if old := u.cur; old != nil && (old.GetEndpoint() != resp.GetEndpoint() || old.GetBucket() != resp.GetBucket()) {
		u.logger.Info("file server changed", "endpoint", resp.GetEndpoint(), "bucket", resp.GetBucket(),
			"old_endpoint", old.GetEndpoint(), "old_bucket", old.GetBucket())
	}
	if u.failures > 0 {
		u.logger.Info("file server credentials fetched again", "failed_tries", u.failures)
	}
	u.cur = resp
	u.gen++
	u.refreshAt = time.Time{}
	u.forced, u.failures, u.failErr = false, 0, nil
	if exp := resp.GetExpiresUnix(); exp != 0 {
		expires := time.Unix(exp, 0)
		if !expires.After(now) {
			u.logger.Warn("file server credentials arrive already expired; is a clock wrong?",
				"expires", expires, "now", now)
		}
		u.refreshAt = now.Add(time.Duration(float64(expires.Sub(now)) * refreshShare))
	}
	u.logger.Debug("file server credentials fetched", "endpoint", resp.GetEndpoint(),
		"bucket", resp.GetBucket(), "refresh_at", u.refreshAt)
	u.wakeRun()
	return u.cur, u.gen, nil
}

// failedLocked records a failed fetch: valid credentials are kept and
// used until the next try; without them the failure is the requests'
// error until then. The first failure in a row is a warning, and so is
// running out of credentials; the rest are logged at debug level.
func (u *Upstream) failedLocked(now time.Time, err error) (*wire.FileServerResponse, uint64, error) {
	u.failures++
	u.forced = false
	wait := retryAfterFailure
	for i := 1; i < u.failures && wait < maxRetryAfterFailure; i++ {
		wait *= 2
	}
	wait = min(wait, maxRetryAfterFailure)
	u.refreshAt = now.Add(wait)
	if u.usableLocked(now) {
		expires := time.Unix(u.cur.GetExpiresUnix(), 0)
		log := u.logger.Debug
		if u.failures == 1 {
			log = u.logger.Warn
		}
		log("refresh file server credentials failed, still using the current ones; trying again, backing off",
			"err", err, "expires", expires, "in", wait)
		if u.cur.GetExpiresUnix() != 0 {
			u.refreshAt = earliest(u.refreshAt, expires)
		}
		return u.cur, u.gen, nil
	}
	held := ""
	if u.cur != nil {
		held = fmt.Sprintf(" (the ones held expired at %s)", time.Unix(u.cur.GetExpiresUnix(), 0).UTC().Format(time.RFC3339))
	}
	log := u.logger.Debug
	if u.failErr == nil {
		log = u.logger.Warn
	}
	u.failErr = fmt.Errorf("get file server credentials%s: %w", held, err)
	u.failedAt = now
	log("no valid file server credentials: reads from the file server fail until the coordinator gives new ones; trying again, backing off",
		"err", err, "in", wait)
	return nil, 0, u.failErr
}

// usableLocked tells whether the held credentials may sign a request.
func (u *Upstream) usableLocked(now time.Time) bool {
	return u.cur != nil && !expired(u.cur, now)
}

// recentFailureLocked is the error of a fetch that failed too recently to
// ask again for a request.
func (u *Upstream) recentFailureLocked(now time.Time) error {
	if u.failErr != nil && now.Before(u.failedAt.Add(retryAfterFailure)) {
		return u.failErr
	}
	return nil
}

func (u *Upstream) dueLocked(now time.Time) bool {
	return u.forced || !u.refreshAt.IsZero() && !now.Before(u.refreshAt)
}

// expire makes the next request fetch new credentials.
func (u *Upstream) expire() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.forced = true
}

func (u *Upstream) wakeRun() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// Run keeps the credentials fresh until ctx ends: it fetches new ones at
// the refresh point of those held whether or not a read comes then, and
// after a failure it tries again, backing off, until it gets some. An
// idle relay then holds valid credentials whenever the coordinator was
// reachable at some time in the last part of their life, and a read after
// an idle hour does not need the coordinator at that very moment. It
// fetches nothing before a read has (New contacts nothing), and nothing
// for credentials that never expire.
func (u *Upstream) Run(ctx context.Context) error {
	u.mu.Lock()
	u.keeping = true
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		u.keeping = false
		u.mu.Unlock()
	}()
	var last time.Time // the last try
	for {
		u.mu.Lock()
		at := u.refreshAt
		keep := u.failErr != nil || u.cur != nil && u.cur.GetExpiresUnix() != 0
		if !last.IsZero() && at.Before(last.Add(retryAfterFailure)) {
			// Credentials that arrive expired are not asked for again at
			// once.
			at = last.Add(retryAfterFailure)
		}
		now := u.now()
		u.mu.Unlock()
		var fire <-chan time.Time
		if keep && !at.IsZero() {
			fire = u.after(max(at.Sub(now), 0))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-u.wake:
			continue
		case <-fire:
		}
		last = u.now()
		u.fetch(ctx) // logged there; a read that needs credentials meanwhile gets the error
		select {
		case <-u.wake: // its own
		default:
		}
	}
}

func expired(r *wire.FileServerResponse, now time.Time) bool {
	return r.GetExpiresUnix() != 0 && !now.Before(time.Unix(r.GetExpiresUnix(), 0))
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// provider lets minio-go sign with whatever credentials the Upstream holds.
// minio-go caches a Value until IsExpired; it is expired as soon as the
// Upstream holds a newer response than the one handed out, so that a refresh
// done by Open is used by the very next request.
type provider struct {
	u      *Upstream
	handed uint64 // generation last returned; guarded by u.mu
}

var _ credentials.Provider = (*provider)(nil)

func (p *provider) RetrieveWithCredContext(cc *credentials.CredContext) (credentials.Value, error) {
	ctx := context.Background()
	if cc != nil && cc.Context != nil {
		ctx = cc.Context
	}
	r, gen, err := p.u.current(ctx)
	if err != nil {
		return credentials.Value{}, err
	}
	p.u.mu.Lock()
	p.handed = gen
	p.u.mu.Unlock()
	v := credentials.Value{
		AccessKeyID:     r.GetAccessKey(),
		SecretAccessKey: r.GetSecretKey(),
		SessionToken:    r.GetSessionToken(),
		SignerType:      credentials.SignatureV4,
	}
	if exp := r.GetExpiresUnix(); exp != 0 {
		v.Expiration = time.Unix(exp, 0)
	}
	return v, nil
}

func (p *provider) Retrieve() (credentials.Value, error) { return p.RetrieveWithCredContext(nil) }

func (p *provider) IsExpired() bool {
	p.u.mu.Lock()
	defer p.u.mu.Unlock()
	return p.u.cur == nil || p.handed != p.u.gen || p.u.dueLocked(p.u.now())
}

// parseContentRange reads "bytes first-last/total" (RFC 9110), the only
// form a ranged 206 answer may carry; the file server is not trusted to
// send it well-formed.
func parseContentRange(s string) (first, total int64, err error) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, fmt.Errorf("content-range %q: want bytes first-last/total", s)
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, fmt.Errorf("content-range %q: no total", s)
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, fmt.Errorf("content-range %q: no range", s)
	}
	num := func(v string) (int64, error) {
		if v == "" || v[0] == '+' || v[0] == '-' {
			return 0, fmt.Errorf("content-range %q: %q is not a number", s, v)
		}
		return strconv.ParseInt(v, 10, 64)
	}
	if first, err = num(a); err != nil {
		return 0, 0, err
	}
	last, err := num(b)
	if err != nil {
		return 0, 0, err
	}
	if total, err = num(tot); err != nil {
		return 0, 0, err
	}
	if first > last || last >= total {
		return 0, 0, fmt.Errorf("content-range %q: range outside the total", s)
	}
	return first, total, nil
}
