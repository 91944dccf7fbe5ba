package upstream

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

// A file server that takes connections and never answers held a read for
// minio-go's ten retries of a minute each, and the cache resumes a fetch
// five times on top: close to an hour before pre-staging or a client was
// told. The relay's client tries a request at most maxFileServerTries
// times.
func TestASilentFileServerIsTriedAFewTimesNotTen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			held = append(held, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	src := FetchFunc(func(context.Context) (*wire.FileServerResponse, error) {
		return &wire.FileServerResponse{Endpoint: ln.Addr().String(), Bucket: bucket, AccessKey: "k", SecretKey: "s",
			SessionToken: "t", ExpiresUnix: time.Now().Add(time.Hour).Unix(), Region: "us-east-1"}, nil
	})
	// The header timeout is the test's, short; the number of tries is the
	// relay's.
	u, err := New(src, logging.Discard(), WithTransport(&http.Transport{ResponseHeaderTimeout: 100 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, _, err := u.Open(ctx, hashOf([]byte("anything"))); err == nil {
		t.Fatal("a read from a file server that never answers succeeded")
	}
	if n := accepted.Load(); n > maxFileServerTries {
		t.Fatalf("one read tried the silent file server %d times, want at most %d", n, maxFileServerTries)
	}
}
