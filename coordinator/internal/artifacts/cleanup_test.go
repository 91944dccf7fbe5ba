package artifacts

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/outposthq/outpost/pkg/testutil"
)

// incomplete starts a multipart upload of key with one part, as an upload
// cut short by a crash leaves it, and returns its upload id.
func (ts *testStore) incomplete(t *testing.T, key string) string {
	t.Helper()
	core := minio.Core{Client: ts.root}
	id, err := core.NewMultipartUpload(t.Context(), ts.Bucket(), key, minio.PutObjectOptions{})
	if err != nil {
		t.Fatalf("start a multipart upload of %s: %v", key, err)
	}
	part := data(5*MiB, 9) // S3's smallest part but the last
	if _, err := core.PutObjectPart(t.Context(), ts.Bucket(), key, id, 1, bytes.NewReader(part), int64(len(part)), minio.PutObjectPartOptions{}); err != nil {
		t.Fatalf("upload a part of %s: %v", key, err)
	}
	return id
}

// incompleteKeys are the keys of every multipart upload left in the
// bucket, sorted. MinIO lists them for no prefix (or one exact key) only.
func (ts *testStore) incompleteKeys(t *testing.T) []string {
	t.Helper()
	var keys []string
	for u := range ts.root.ListIncompleteUploads(t.Context(), ts.Bucket(), "", true) {
		if u.Err != nil {
			t.Fatalf("list incomplete uploads: %v", u.Err)
		}
		keys = append(keys, u.Key)
	}
	slices.Sort(keys)
	return keys
}

func TestCleanAbandonedUploads(t *testing.T) {
	ts := newTestStore(t)
	ctx := t.Context()
	crashed := uploadPrefix + "0123456789abcdef0123456789abcdef"
	ts.incomplete(t, crashed)
	other := "elsewhere/big.iso" // not the coordinator's: never touched
	ts.incomplete(t, other)
	leftover := uploadPrefix + "fedcba9876543210fedcba9876543210" // written whole, never copied
	if _, err := ts.root.PutObject(ctx, ts.Bucket(), leftover, bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := ts.incompleteKeys(t), []string{other, crashed}; !slices.Equal(got, want) {
		t.Fatalf("incomplete uploads before = %v, want %v", got, want)
	}

	// Younger than the threshold: could still be running, so kept.
	aborted, removed, err := ts.CleanAbandonedUploads(ctx, AbandonedUploadAge)
	if err != nil || aborted != 0 || removed != 0 {
		t.Fatalf("CleanAbandonedUploads(%v) = %d, %d, %v; want nothing removed", AbandonedUploadAge, aborted, removed, err)
	}
	if got, want := ts.incompleteKeys(t), []string{other, crashed}; !slices.Equal(got, want) {
		t.Fatalf("fresh uploads were aborted: left %v, want %v", got, want)
	}

	// Old enough (any age, here): aborted, and the leftover object goes.
	aborted, removed, err = ts.CleanAbandonedUploads(ctx, 0)
	if err != nil || aborted != 1 || removed != 1 {
		t.Fatalf("CleanAbandonedUploads(0) = %d, %d, %v; want 1 aborted, 1 removed", aborted, removed, err)
	}
	if got, want := ts.incompleteKeys(t), []string{other}; !slices.Equal(got, want) {
		t.Fatalf("incomplete uploads after = %v, want %v", got, want)
	}
	if keys := ts.keys(t, uploadPrefix); len(keys) != 0 {
		t.Fatalf("temporary objects left: %v", keys)
	}
	// Nothing left to do: nothing done, no error.
	if aborted, removed, err = ts.CleanAbandonedUploads(ctx, 0); err != nil || aborted != 0 || removed != 0 {
		t.Fatalf("second CleanAbandonedUploads(0) = %d, %d, %v", aborted, removed, err)
	}
}

// An upload of this process in progress is never aborted, however low the
// threshold: it finishes and is stored.
func TestCleanAbandonedUploadsSparesRunningUploads(t *testing.T) {
	ts := newTestStore(t)
	content := data(20*MiB, 11) // more than a part: a multipart upload
	pr, pw := io.Pipe()
	type result struct {
		sha string
		err error
	}
	done := make(chan result, 1)
	go func() {
		sha, _, err := ts.Upload(t.Context(), pr, -1)
		done <- result{sha, err}
	}()
	// The first part goes; the rest waits until the cleanup has run.
	if _, err := pw.Write(content[:17*MiB]); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		return len(ts.incompleteKeys(t)) == 1
	}, "the upload never started its multipart upload")
	aborted, removed, err := ts.CleanAbandonedUploads(t.Context(), 0)
	if err != nil || aborted != 0 || removed != 0 {
		t.Fatalf("CleanAbandonedUploads(0) during an upload = %d, %d, %v; want it spared", aborted, removed, err)
	}
	if _, err := pw.Write(content[17*MiB:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	r := <-done
	if r.err != nil || r.sha != sum(content) {
		t.Fatalf("Upload = %s, %v; want %s", r.sha, r.err, sum(content))
	}
	ts.assertNoTemp(t)
}

// RunCleanup cleans at start and says how much it removed.
func TestRunCleanupLogs(t *testing.T) {
	ts := newTestStore(t)
	ts.incomplete(t, uploadPrefix+"00000000000000000000000000000001")
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan struct{})
	go func() { defer close(stopped); ts.RunCleanup(ctx, time.Hour, 0) }()
	testutil.Eventually(t, 30*time.Second, func() bool {
		return strings.Contains(ts.logs.String(), "removed abandoned uploads")
	}, "RunCleanup logged nothing")
	cancel()
	<-stopped
	if logs := ts.logs.String(); !strings.Contains(logs, "aborted=1") || !strings.Contains(logs, "removed=0") {
		t.Fatalf("logs do not say what was removed:\n%s", logs)
	}
	if keys := ts.incompleteKeys(t); len(keys) != 0 {
		t.Fatalf("incomplete uploads left: %v", keys)
	}
}
