package artifacts

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/testutil"
)

// An upload ends with a server-side copy of its temporary object to the
// content address, which minio-go makes a multipart copy into
// sha256/<hex> beyond 5 GiB (and PutBackup a multipart upload into
// backups/NAME beyond a part). A copy or backup cut short — the
// coordinator killed or restarted during it, the file server failing the
// completion (which minio-go does not abort) or unreachable for the abort
// — leaves that multipart upload, with up to 16 GiB of parts, under
// sha256/ or backups/; the cleanup looked under uploads/ alone, as does
// the lifecycle rule, so the parts stayed on the file server forever,
// counted in no artifact. What is left under the coordinator's own
// prefixes is now aborted like an upload's, once as old; nothing else in
// the bucket is touched.
func TestCleanAbandonedUploadsAbortsCopiesCutShort(t *testing.T) {
	ts := newTestStore(t)
	ctx := t.Context()
	copyCutShort := artifactPrefix + sum([]byte("a 6 GiB artifact"))
	backupCutShort := backupPrefix + "coordinator-20261101T000000Z.age"
	other := "elsewhere/big.iso" // not the coordinator's: never touched
	for _, key := range []string{copyCutShort, backupCutShort, other} {
		ts.incomplete(t, key)
	}
	// A whole artifact is never touched.
	kept := data(1000, 12)
	sha, _, err := ts.Upload(ctx, strings.NewReader(string(kept)), int64(len(kept)))
	if err != nil {
		t.Fatal(err)
	}

	if aborted, removed, err := ts.CleanAbandonedUploads(ctx, AbandonedUploadAge); err != nil || aborted != 0 || removed != 0 {
		t.Fatalf("CleanAbandonedUploads(%v) = %d, %d, %v; want young uploads kept", AbandonedUploadAge, aborted, removed, err)
	}
	aborted, removed, err := ts.CleanAbandonedUploads(ctx, 0)
	if err != nil || aborted != 2 || removed != 0 {
		t.Errorf("CleanAbandonedUploads(0) = %d aborted, %d removed, %v; want the copy and the backup cut short aborted", aborted, removed, err)
	}
	if got, want := ts.incompleteKeys(t), []string{other}; !slices.Equal(got, want) {
		t.Errorf("incomplete uploads left: %v, want %v", got, want)
	}
	if got := ts.get(t, artifactPrefix+sha); string(got) != string(kept) {
		t.Errorf("the stored artifact changed")
	}
}

// A backup of this process under way is a multipart upload under
// backups/ too: the cleanup leaves it alone, however low its threshold.
func TestCleanAbandonedUploadsSparesARunningBackup(t *testing.T) {
	ts := newTestStore(t)
	content := data(20*MiB, 13) // more than a part: a multipart upload
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- ts.PutBackup(t.Context(), "coordinator-1.age", pr, -1) }()
	if _, err := pw.Write(content[:17*MiB]); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		return len(ts.incompleteKeys(t)) == 1
	}, "the backup never started its multipart upload")
	if aborted, removed, err := ts.CleanAbandonedUploads(t.Context(), 0); err != nil || aborted != 0 || removed != 0 {
		t.Fatalf("CleanAbandonedUploads(0) during a backup = %d, %d, %v; want it spared", aborted, removed, err)
	}
	if _, err := pw.Write(content[17*MiB:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatalf("PutBackup: %v", err)
	}
	if got := ts.get(t, backupPrefix+"coordinator-1.age"); len(got) != len(content) {
		t.Fatalf("the backup stored %d bytes, want %d", len(got), len(content))
	}
}
