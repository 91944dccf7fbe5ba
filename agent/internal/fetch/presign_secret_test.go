package fetch

import (
	"context"
	"net"
	"strings"
	"testing"
)

// A presigned URL is a credential for the artifact until it expires (its
// signature, and a session token with temporary credentials), and a
// download's errors are logged and reported: they name the file server
// without the URL's query.
func TestErrorsDoNotQuoteAPresignedURLsCredentials(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	const secret = "X-Amz-Security-Token=TEMPORARY-SESSION-TOKEN&X-Amz-Signature=deadbeefcafe"
	url := "http://" + addr + "/outpost-artifacts/sha256/x?X-Amz-Algorithm=AWS4-HMAC-SHA256&" + secret
	for _, chunked := range []bool{false, true} {
		data := make([]byte, 3000)
		a := artifact(data)
		if chunked {
			a = chunkedArtifact(data, 1000)
		}
		f := newFetcher(t, presignFunc(func(context.Context, string) (string, error) { return url, nil }))
		_, err := f.Get(context.Background(), a, Sources{Direct: true})
		if err == nil {
			t.Fatal("fetch from a file server that is down succeeded")
		}
		if strings.Contains(err.Error(), "deadbeefcafe") || strings.Contains(err.Error(), "TEMPORARY-SESSION-TOKEN") {
			t.Errorf("chunked %v: the error quotes the presigned URL's credentials: %v", chunked, err)
		}
	}
}
