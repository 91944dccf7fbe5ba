// Package artifacts is the coordinator's side of the S3-compatible file
// server: it streams uploads into the bucket under their SHA-256, tells
// whether an artifact is there, presigns downloads for agents in direct mode
// and mints short-lived read-only credentials for relays.
//
// It does not keep the list of artifacts with their names and upload times
// (that is the coordinator's store), and it never serves bytes to agents.
//
// Layout of the bucket:
//
//	sha256/<64 hex>   an artifact, by content
//	uploads/<random>  an upload in progress; removed when it ends
//	backups/<name>    the coordinator's backups
//
// An upload cut short by a crash of the coordinator leaves its multipart
// upload (or, rarer, its whole temporary object) under uploads/; a
// server-side copy to sha256/ of more than 5 GiB, or a backup, cut short
// leaves a multipart upload under its key. The coordinator aborts those
// multipart uploads and removes those temporary objects once older than
// AbandonedUploadAge, at start and every CleanupInterval (RunCleanup),
// whatever the bucket's lifecycle.
package artifacts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/lifecycle"
	"golang.org/x/sync/semaphore"

	"github.com/outposthq/outpost/pkg/wire"
)

const (
	artifactPrefix = "sha256/"
	uploadPrefix   = "uploads/"

	// defaultPartSize bounds the memory one upload holds: minio-go buffers a
	// part at a time when the reader cannot seek, as a request body cannot.
	defaultPartSize = 16 * MiB
	maxParts        = 10000

	// cleanupTimeout bounds removing a temporary object after a failed
	// upload, which runs even when the upload's context was cancelled.
	cleanupTimeout = 30 * time.Second
)

const (
	// AbandonedUploadAge is how long ago an upload must have begun (a
	// multipart upload) or been written (a temporary object) before
	// RunCleanup takes it for abandoned. Far beyond what an upload takes:
	// 16 GiB at 1 MB/s is under 5 hours.
	AbandonedUploadAge = 6 * time.Hour
	// CleanupInterval is how often RunCleanup looks.
	CleanupInterval = 6 * time.Hour
)

// Limits S3 and MinIO put on presigned URLs and STS sessions.
const (
	MinPresignTTL     = time.Second
	MaxPresignTTL     = 7 * 24 * time.Hour
	MinCredentialsTTL = 15 * time.Minute
	MaxCredentialsTTL = 12 * time.Hour
)

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ErrInvalidSHA256 is wrapped by every error about a malformed hash.
var ErrInvalidSHA256 = errors.New("not a SHA-256")

// CheckSHA256 returns an error wrapping ErrInvalidSHA256 unless s is 64
// lower-case hex digits. A hash is turned into an object key only after it
// passed this check, so it can never name anything but an artifact.
func CheckSHA256(s string) error {
	if sha256RE.MatchString(s) {
		return nil
	}
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return fmt.Errorf("%q is %w; use the 64 lower-case hex digits of the artifact's SHA-256", s, ErrInvalidSHA256)
}

// TooLargeError is an upload beyond the configured maximum size.
type TooLargeError struct {
	Max int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("the artifact is larger than the limit of %d bytes (%.1f GiB); upload a smaller file or raise max_size in the coordinator's file server config",
		e.Max, float64(e.Max)/GiB)
}

// Store reads and writes artifacts in one bucket of an S3-compatible server.
// It is safe for concurrent use.
type Store struct {
	cfg      Config
	client   *minio.Client
	logger   *slog.Logger
	partSize uint64
	sts      *http.Client // for STS; minio.Client keeps its own

	// running counts, by key, this process's uploads, copies and backups
	// in progress, which CleanAbandonedUploads never touches, however
	// old. Two uploads of the same bytes copy to the same key.
	mu      sync.Mutex
	running map[string]int

	// uploads bounds the part buffers of the uploads in progress.
	uploads *semaphore.Weighted
}

// uploadBudget is what the part buffers of the uploads in progress may
// hold together: eight uploads at the default part size. A part size
// larger than that (for a max_size of terabytes) lets one at a time.
const uploadBudget = 8 * defaultPartSize

func newUploadSlots(n int64) *semaphore.Weighted { return semaphore.NewWeighted(n) }

// errCutShort is a body that ended before its end.
var errCutShort = errors.New("the body was cut short before its end")

// New returns a Store for cfg. Zero Bucket and MaxSize take their defaults.
// It contacts nothing; see EnsureBucket.
func New(cfg Config, logger *slog.Logger) (*Store, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.MaxSize == 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("file server config: %w", err)
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: cfg.Secure,
		Region: cfg.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("file server client for %s: %w", cfg.Endpoint, err)
	}
	// Parts must be large enough that MaxSize fits in S3's 10000 parts.
	partSize := uint64(defaultPartSize)
	if need := uint64((cfg.MaxSize + maxParts - 1) / maxParts); need > partSize {
		partSize = (need + MiB - 1) / MiB * MiB
	}
	return &Store{
		cfg:      cfg,
		client:   client,
		logger:   logger.With("component", "artifacts"),
		partSize: partSize,
		sts:      &http.Client{Transport: http.DefaultTransport, Timeout: time.Minute},
		running:  map[string]int{},
		uploads:  newUploadSlots(max(uploadBudget, int64(partSize))),
	}, nil
}

// Bucket is the bucket the store uses.
func (s *Store) Bucket() string { return s.cfg.Bucket }

// CredentialsRefused says whether err is the file server refusing the
// coordinator's credentials: a setting to correct, not a server that is
// still starting.
func CredentialsRefused(err error) bool {
	var er minio.ErrorResponse
	if !errors.As(err, &er) {
		return false
	}
	switch er.Code {
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied":
		return true
	}
	return false
}

// EnsureBucket creates the bucket if it does not exist. A bucket it creates
// gets a lifecycle rule that deletes uploads abandoned by a crash after a
// day; an existing bucket's lifecycle is the operator's and is left alone
// (RunCleanup removes abandoned uploads either way).
func (s *Store) EnsureBucket(ctx context.Context) error {
	exists, err := s.client.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("check bucket %s on %s: %w", s.cfg.Bucket, s.cfg.Endpoint, err)
	}
	if exists {
		return nil
	}
	err = s.client.MakeBucket(ctx, s.cfg.Bucket, minio.MakeBucketOptions{Region: s.cfg.Region})
	if err != nil {
		if code := minio.ToErrorResponse(err).Code; code == minio.BucketAlreadyOwnedByYou || code == minio.BucketAlreadyExists {
			return nil // another coordinator replica won the race
		}
		return fmt.Errorf("create bucket %s on %s: %w", s.cfg.Bucket, s.cfg.Endpoint, err)
	}
	s.logger.Info("created bucket", "bucket", s.cfg.Bucket)
	rules := &lifecycle.Configuration{Rules: []lifecycle.Rule{{
		ID:                             "outpost-abandoned-uploads",
		Status:                         "Enabled",
		RuleFilter:                     lifecycle.Filter{Prefix: uploadPrefix},
		Expiration:                     lifecycle.Expiration{Days: 1},
		AbortIncompleteMultipartUpload: lifecycle.AbortIncompleteMultipartUpload{DaysAfterInitiation: 1},
	}}}
	if err := s.client.SetBucketLifecycle(ctx, s.cfg.Bucket, rules); err != nil {
		// Not every S3-compatible server has lifecycles; uploads still work.
		s.logger.Warn("could not set a lifecycle rule for abandoned uploads", "bucket", s.cfg.Bucket, "err", err)
	}
	return nil
}

// Upload streams r into the bucket and stores it under its SHA-256, which it
// returns with the number of bytes. size is the exact length of r, or -1 when
// unknown. r is never held in memory whole: it goes in parts to a temporary
// object, hashed on the way, and is then copied on the server to its content
// address. Uploading bytes that are already there only costs the transfer.
// An upload beyond the maximum size fails with *TooLargeError.
func (s *Store) Upload(ctx context.Context, r io.Reader, size int64) (sha string, n int64, err error) {
	if size < -1 {
		return "", 0, fmt.Errorf("upload artifact: size %d is not valid; give the length in bytes or -1 when unknown", size)
	}
	if size > s.cfg.MaxSize {
		return "", 0, &TooLargeError{Max: s.cfg.MaxSize}
	}
	// minio-go holds a part in memory (one read whole when the size is
	// known and smaller): uploads beyond the budget wait their turn.
	need := int64(s.partSize)
	if size >= 0 {
		need = min(need, max(size, 1))
	}
	if err := s.uploads.Acquire(ctx, need); err != nil {
		return "", 0, fmt.Errorf("upload artifact: waiting for a turn: %w", err)
	}
	defer s.uploads.Release(need)
	tmp := tempKey()
	done := s.begin(tmp)
	// Whatever happens below, the temporary object goes. Removing a key that
	// was never written is not an error in S3.
	defer func() {
		s.removeTemp(ctx, tmp, err != nil)
		done()
	}()

	hr := &hashingReader{r: r, h: sha256.New(), max: s.cfg.MaxSize}
	if size >= 0 {
		// minio-go reads exactly size bytes; the limit keeps the hash to
		// what it stores even if that changes.
		hr.r = io.LimitReader(r, size)
	}
	_, err = s.client.PutObject(ctx, s.cfg.Bucket, tmp, hr, size, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    s.partSize,
	})
	switch {
	case hr.tooLarge:
		return "", 0, &TooLargeError{Max: s.cfg.MaxSize}
	case hr.cut:
		return "", 0, fmt.Errorf("upload artifact: %w after %d bytes; send it again", errCutShort, hr.n)
	case size >= 0 && hr.eof && hr.n < size:
		return "", 0, fmt.Errorf("upload artifact: the body ended after %d of the %d bytes announced; send it again", hr.n, size)
	case err != nil:
		return "", 0, fmt.Errorf("upload artifact to %s: %w", tmp, err)
	case hr.n != size && size >= 0:
		return "", 0, fmt.Errorf("upload artifact: stored %d of the %d bytes announced", hr.n, size)
	case size >= 0 && hasMore(r):
		return "", 0, fmt.Errorf("upload artifact: the body is longer than the %d bytes announced; send the exact length", size)
	}
	sha = hex.EncodeToString(hr.h.Sum(nil))
	key := artifactPrefix + sha

	switch have, ok, serr := s.stat(ctx, key); {
	case serr != nil:
		return "", 0, fmt.Errorf("upload artifact %s: %w", sha, serr)
	case ok && have == hr.n:
		return sha, hr.n, nil // already there; the deferred remove drops the copy
	}
	// ComposeObject does a single server-side copy up to 5 GiB and a
	// multipart copy beyond.
	copied := s.begin(key)
	_, err = s.client.ComposeObject(ctx,
		minio.CopyDestOptions{Bucket: s.cfg.Bucket, Object: key},
		minio.CopySrcOptions{Bucket: s.cfg.Bucket, Object: tmp},
	)
	copied()
	if err != nil {
		return "", 0, fmt.Errorf("upload artifact %s: copy %s to %s: %w", sha, tmp, key, err)
	}
	s.logger.Debug("stored artifact", "sha256", sha, "size", hr.n)
	return sha, hr.n, nil
}

// begin marks key as written by this process until the returned func is
// called: CleanAbandonedUploads leaves its multipart upload alone.
func (s *Store) begin(key string) (done func()) {
	s.mu.Lock()
	s.running[key]++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.running[key]--; s.running[key] <= 0 {
			delete(s.running, key)
		}
	}
}

// removeTemp deletes a temporary object, even when ctx was cancelled, since
// that is when an upload most often fails. After a failure it also drops
// the parts of a multipart upload that minio-go could not abort.
func (s *Store) removeTemp(ctx context.Context, key string, failed bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
		s.logger.Warn("could not remove a temporary upload; the bucket's lifecycle rule will", "key", key, "err", err)
	}
	if failed {
		if err := s.client.RemoveIncompleteUpload(ctx, s.cfg.Bucket, key); err != nil {
			s.logger.Warn("could not abort a failed upload; the bucket's lifecycle rule will", "key", key, "err", err)
		}
	}
}

// CleanAbandonedUploads removes what uploads, copies and backups cut
// short by a crash left: it aborts the multipart uploads under uploads/,
// sha256/ and backups/ initiated more than olderThan ago, and removes the
// temporary objects under uploads/ last written more than olderThan ago (a
// crash between writing one and copying it to its content address). This
// process's own uploads in progress are never touched; another
// coordinator's on the same bucket are safe as long as olderThan is longer
// than any upload takes (AbandonedUploadAge). Nothing else in the bucket
// is. It returns how many uploads it aborted and objects it removed, and
// goes on past a failure to remove one, returning the failures joined.
func (s *Store) CleanAbandonedUploads(ctx context.Context, olderThan time.Duration) (aborted, removed int, err error) {
	cutoff := time.Now().Add(-olderThan)
	core := minio.Core{Client: s.client}
	var errs []error
	ours := func(key string) bool {
		for _, p := range []string{uploadPrefix, artifactPrefix, backupPrefix} {
			if strings.HasPrefix(key, p) {
				return true
			}
		}
		return false
	}
	// MinIO lists multipart uploads under one exact key or, with no
	// prefix, all of them; S3 takes the prefix. Both are asked, and the
	// keys filtered here.
	seen := map[string]bool{}
	for _, prefix := range []string{uploadPrefix, artifactPrefix, backupPrefix, ""} {
		for u := range s.client.ListIncompleteUploads(ctx, s.cfg.Bucket, prefix, true) {
			if u.Err != nil {
				return aborted, removed, fmt.Errorf("list incomplete uploads in bucket %s: %w", s.cfg.Bucket, u.Err)
			}
			if seen[u.UploadID] || !ours(u.Key) || u.Initiated.After(cutoff) || s.isRunning(u.Key) {
				continue
			}
			seen[u.UploadID] = true
			if err := core.AbortMultipartUpload(ctx, s.cfg.Bucket, u.Key, u.UploadID); err != nil {
				if minio.ToErrorResponse(err).Code != minio.NoSuchUpload { // gone meanwhile
					errs = append(errs, fmt.Errorf("abort upload %s of %s: %w", u.UploadID, u.Key, err))
				}
				continue
			}
			aborted++
		}
	}
	for obj := range s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: uploadPrefix, Recursive: true}) {
		if obj.Err != nil {
			return aborted, removed, fmt.Errorf("list %s in bucket %s: %w", uploadPrefix, s.cfg.Bucket, obj.Err)
		}
		if obj.LastModified.After(cutoff) || s.isRunning(obj.Key) {
			continue
		}
		if err := s.client.RemoveObject(ctx, s.cfg.Bucket, obj.Key, minio.RemoveObjectOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", obj.Key, err))
			continue
		}
		removed++
	}
	return aborted, removed, errors.Join(errs...)
}

func (s *Store) isRunning(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running[key] > 0
}

// RunCleanup removes abandoned uploads (CleanAbandonedUploads with
// olderThan) at once and then every interval, logging what it removed,
// until ctx ends.
func (s *Store) RunCleanup(ctx context.Context, interval, olderThan time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		aborted, removed, err := s.CleanAbandonedUploads(ctx, olderThan)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			s.logger.Warn("could not remove every abandoned upload; retrying later", "bucket", s.cfg.Bucket,
				"aborted", aborted, "removed", removed, "err", err)
		default:
			s.logger.Info("removed abandoned uploads", "bucket", s.cfg.Bucket, "older_than", olderThan,
				"aborted", aborted, "removed", removed)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Stat returns the size of an artifact; ok is false when it is not there.
func (s *Store) Stat(ctx context.Context, sha256 string) (size int64, ok bool, err error) {
	if err := CheckSHA256(sha256); err != nil {
		return 0, false, fmt.Errorf("stat artifact: %w", err)
	}
	size, ok, err = s.stat(ctx, artifactPrefix+sha256)
	if err != nil {
		return 0, false, fmt.Errorf("stat artifact %s: %w", sha256, err)
	}
	return size, ok, nil
}

// Remove deletes an artifact's bytes; existed says whether they were
// there. Removing what is not there is not an error, so a removal cut
// short can simply be run again.
func (s *Store) Remove(ctx context.Context, sha256 string) (existed bool, err error) {
	if err := CheckSHA256(sha256); err != nil {
		return false, fmt.Errorf("remove artifact: %w", err)
	}
	key := artifactPrefix + sha256
	if _, existed, err = s.stat(ctx, key); err != nil {
		return false, fmt.Errorf("remove artifact %s: %w", sha256, err)
	}
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return false, fmt.Errorf("remove artifact %s from bucket %s: %w", sha256, s.cfg.Bucket, err)
	}
	if existed {
		s.logger.Debug("removed artifact", "sha256", sha256)
	}
	return existed, nil
}

func (s *Store) stat(ctx context.Context, key string) (int64, bool, error) {
	info, err := s.client.StatObject(ctx, s.cfg.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("stat %s in bucket %s: %w", key, s.cfg.Bucket, err)
	}
	return info.Size, true, nil
}

// Presign returns a URL that GETs an artifact (with Range, if wanted)
// without credentials until expires. It does not check that the artifact
// exists.
func (s *Store) Presign(ctx context.Context, sha256 string, ttl time.Duration) (url string, expires time.Time, err error) {
	if err := CheckSHA256(sha256); err != nil {
		return "", time.Time{}, fmt.Errorf("presign artifact: %w", err)
	}
	if ttl < MinPresignTTL || ttl > MaxPresignTTL {
		return "", time.Time{}, fmt.Errorf("presign artifact %s: lifetime %v is out of range; use %v to %v", sha256, ttl, MinPresignTTL, MaxPresignTTL)
	}
	// Taken before signing, so the URL is never thought valid after it is not.
	now := time.Now()
	u, err := s.client.PresignedGetObject(ctx, s.cfg.Bucket, artifactPrefix+sha256, ttl, nil)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("presign artifact %s: %w", sha256, err)
	}
	return u.String(), now.Add(ttl.Truncate(time.Second)), nil
}

// ReadOnlyCredentials mints temporary credentials for a relay through STS
// AssumeRole. A session policy limits them to reading artifacts (and listing
// and locating the bucket, which S3 clients do); they cannot write, delete
// or read uploads in progress.
func (s *Store) ReadOnlyCredentials(ctx context.Context, ttl time.Duration) (*wire.FileServerResponse, error) {
	if ttl < MinCredentialsTTL || ttl > MaxCredentialsTTL {
		return nil, fmt.Errorf("mint read-only credentials: lifetime %v is out of range; use %v to %v", ttl, MinCredentialsTTL, MaxCredentialsTTL)
	}
	scheme := "http://"
	if s.cfg.Secure {
		scheme = "https://"
	}
	creds, err := credentials.NewSTSAssumeRole(scheme+s.cfg.Endpoint, credentials.STSAssumeRoleOptions{
		AccessKey:       s.cfg.AccessKey,
		SecretKey:       s.cfg.SecretKey,
		Policy:          s.readOnlyPolicy(),
		Location:        s.cfg.Region,
		DurationSeconds: int(ttl / time.Second),
	})
	if err != nil {
		return nil, fmt.Errorf("mint read-only credentials: %w", err)
	}
	v, err := creds.GetWithContext(&credentials.CredContext{Context: ctx, Client: s.sts})
	if err != nil {
		return nil, fmt.Errorf("mint read-only credentials with STS AssumeRole on %s: %w", s.cfg.Endpoint, err)
	}
	if v.SessionToken == "" || v.Expiration.IsZero() {
		return nil, fmt.Errorf("mint read-only credentials on %s: STS answered without a session token or expiry", s.cfg.Endpoint)
	}
	return &wire.FileServerResponse{
		Endpoint:     s.cfg.Endpoint,
		Secure:       s.cfg.Secure,
		Bucket:       s.cfg.Bucket,
		AccessKey:    v.AccessKeyID,
		SecretKey:    v.SecretAccessKey,
		SessionToken: v.SessionToken,
		ExpiresUnix:  v.Expiration.Unix(),
		Region:       s.cfg.Region,
	}, nil
}

// readOnlyPolicy is the IAM session policy of relay credentials.
func (s *Store) readOnlyPolicy() string {
	bucket := "arn:aws:s3:::" + s.cfg.Bucket
	type statement struct {
		Effect    string
		Action    []string
		Resource  []string
		Condition map[string]map[string][]string `json:",omitempty"`
	}
	doc := struct {
		Version   string
		Statement []statement
	}{
		Version: "2012-10-17",
		Statement: []statement{
			{Effect: "Allow", Action: []string{"s3:GetObject"}, Resource: []string{bucket + "/" + artifactPrefix + "*"}},
			{Effect: "Allow", Action: []string{"s3:GetBucketLocation"}, Resource: []string{bucket}},
			{Effect: "Allow", Action: []string{"s3:ListBucket"}, Resource: []string{bucket},
				Condition: map[string]map[string][]string{"StringLike": {"s3:prefix": {artifactPrefix + "*"}}}},
		},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err) // a fixed shape of strings always marshals
	}
	return string(b)
}

// hashingReader hashes and counts what minio-go reads, and stops the upload
// once more than max bytes came.
type hashingReader struct {
	r        io.Reader
	h        hash.Hash
	n        int64
	max      int64
	tooLarge bool
	eof      bool
	cut      bool // the body ended before its end
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	hr.h.Write(p[:n])
	hr.n += int64(n)
	hr.eof = hr.eof || errors.Is(err, io.EOF)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		// minio-go would take it for the end of a stream of unknown
		// length, and store what came.
		hr.cut = true
		return n, errCutShort
	}
	if hr.n > hr.max {
		hr.tooLarge = true
		return n, &TooLargeError{Max: hr.max}
	}
	return n, err
}

// hasMore tells whether r has bytes left; it consumes one if so.
func hasMore(r io.Reader) bool {
	var b [1]byte
	n, _ := io.ReadFull(r, b[:])
	return n > 0
}

func tempKey() string {
	var b [16]byte
	rand.Read(b[:]) // never fails since Go 1.24
	return uploadPrefix + hex.EncodeToString(b[:])
}

// backupPrefix holds the coordinator's own backups in the bucket, beside
// the artifacts: members' read-only credentials reach sha256/ alone.
const backupPrefix = "backups/"

// PutBackup stores a backup file under backups/NAME: a copy off the
// coordinator's machine.
func (s *Store) PutBackup(ctx context.Context, name string, r io.Reader, size int64) error {
	if name == "" || strings.ContainsAny(name, "/\\") {
		return fmt.Errorf("store backup: %q is not a file name", name)
	}
	defer s.begin(backupPrefix + name)()
	_, err := s.client.PutObject(ctx, s.cfg.Bucket, backupPrefix+name, r, size, minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: s.partSize})
	if err != nil {
		return fmt.Errorf("store backup %s in bucket %s: %w", name, s.cfg.Bucket, err)
	}
	return nil
}

// Backups lists the names of the backups in the bucket, sorted.
func (s *Store) Backups(ctx context.Context) ([]string, error) {
	var out []string
	for obj := range s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: backupPrefix}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("list backups in bucket %s: %w", s.cfg.Bucket, obj.Err)
		}
		out = append(out, strings.TrimPrefix(obj.Key, backupPrefix))
	}
	sort.Strings(out)
	return out, nil
}

// RemoveBackup deletes a backup from the bucket.
func (s *Store) RemoveBackup(ctx context.Context, name string) error {
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, backupPrefix+name, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("remove backup %s from bucket %s: %w", name, s.cfg.Bucket, err)
	}
	return nil
}
