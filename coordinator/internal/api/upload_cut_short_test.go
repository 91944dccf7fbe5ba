package api

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/outposthq/outpost/coordinator/internal/artifacts"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
)

// An upload whose client goes away half way is not stored, whatever its
// framing: the file server's client (minio-go) takes a reader's
// io.ErrUnexpectedEOF, which net/http returns for a body cut short, for
// the end of a stream of unknown length, and stored the bytes that came
// as a whole artifact under the name given. Nothing is left behind in the
// bucket either, and the answer says the upload was cut short (not that
// the file server failed). The same for an upload that stalls and is
// given up.
func TestAnUploadCutShortIsNotStored(t *testing.T) {
	m := testutil.StartMinIO(t)
	cfg := artifacts.DefaultConfig()
	cfg.Endpoint, cfg.AccessKey, cfg.SecretKey = m.Endpoint, m.AccessKey, m.SecretKey
	files, err := artifacts.New(cfg, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := files.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	srv, _, _ := newAPI(t)
	a := apiOf(t, srv)
	a.d.Files, a.d.UploadIdle = files, 300*time.Millisecond
	head := "POST /v1/artifacts?name=half.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\n"
	data := strings.Repeat("d", 1000)
	for _, tc := range []struct {
		name, framing, body string
		stall               bool
	}{
		{"chunked, within a chunk", "Transfer-Encoding: chunked\r\n", "800\r\n" + data, false},
		{"chunked, between chunks", "Transfer-Encoding: chunked\r\n", "3e8\r\n" + data + "\r\n", false},
		{"known length", "Content-Length: 4096\r\n", data, false},
		{"stalled", "Transfer-Encoding: chunked\r\n", "3e8\r\n" + data + "\r\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := sendHead(t, srv, head+tc.framing+"\r\n", tc.body)
			want, says := 400, "cut short"
			if tc.stall {
				want, says = 408, "no byte"
			} else {
				// The client stops sending, as one that is killed does;
				// it still reads, to learn what became of the upload.
				if err := c.(*net.TCPConn).CloseWrite(); err != nil {
					t.Fatal(err)
				}
			}
			code, body := answer(t, c, tc.name)
			if code != want || !strings.Contains(body, says) {
				t.Errorf("%d %s; want %d saying %q", code, body, want, says)
			}
		})
	}
	if code, out := call(t, srv, "GET", "/v1/artifacts", "", token); code != 200 || len(out["artifacts"].([]any)) != 0 {
		t.Fatalf("an upload cut short was stored: %d %v", code, out)
	}
	root := m.Client(t)
	for obj := range root.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		t.Errorf("left in the bucket: %s (%v)", obj.Key, obj.Err)
	}
	for u := range root.ListIncompleteUploads(ctx, cfg.Bucket, "", true) {
		t.Errorf("multipart upload left: %s (%v)", u.Key, u.Err)
	}
}
