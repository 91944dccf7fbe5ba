package relay

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/time/rate"
)

// fileReaderFrom stands for a TCP connection: it records what its ReadFrom
// is given, as sendfile needs a file behind an *io.LimitedReader.
type fileReaderFrom struct {
	bytes.Buffer
	calls   int
	maxN    int64
	notFile bool
}

func (w *fileReaderFrom) ReadFrom(r io.Reader) (int64, error) {
	w.calls++
	lr, ok := r.(*io.LimitedReader)
	if !ok {
		w.notFile = true
		return w.Buffer.ReadFrom(r)
	}
	if _, ok := lr.R.(*os.File); !ok {
		w.notFile = true
	}
	w.maxN = max(w.maxN, lr.N)
	return w.Buffer.ReadFrom(lr)
}

type osFileObject struct{ *os.File }

func (o osFileObject) OSFile() *os.File { return o.File }

// A limited egress still hands the cached file to the connection (for
// sendfile), a burst of the limit at a time, from where a Range starts.
func TestLimitedEgressSendsTheFile(t *testing.T) {
	data := pattern(1<<20 + 4321)
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	const burst = 64 << 10
	for _, tt := range []struct {
		name     string
		from, to int64
	}{
		{"whole", 0, int64(len(data))},
		{"range", 12345, int64(len(data)) - 99},
		{"one byte", 777, 778},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			lim := rate.NewLimiter(1<<30, burst)
			obj := osFileObject{f}
			ls := &limitedSeeker{ReadSeeker: obj, r: obj, ctx: context.Background(), lim: lim}
			if _, err := ls.Seek(tt.from, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			var w fileReaderFrom
			n, err := ls.SendTo(&w, tt.to-tt.from)
			if err != nil || n != tt.to-tt.from {
				t.Fatalf("SendTo: %d, %v; want %d", n, err, tt.to-tt.from)
			}
			if !bytes.Equal(w.Bytes(), data[tt.from:tt.to]) {
				t.Errorf("sent the wrong bytes")
			}
			if w.notFile {
				t.Errorf("ReadFrom was given something other than the file: no sendfile")
			}
			if w.maxN > burst {
				t.Errorf("one ReadFrom of %d bytes, more than the burst %d", w.maxN, burst)
			}
			if want := int((n + burst - 1) / burst); w.calls != want {
				t.Errorf("%d ReadFrom calls, want %d", w.calls, want)
			}
		})
	}
}

// A file that ends before what was asked cuts the response.
func TestLimitedEgressShortFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, pattern(1000), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	obj := osFileObject{f}
	ls := &limitedSeeker{ReadSeeker: obj, r: obj, ctx: context.Background(), lim: rate.NewLimiter(1<<30, 4096)}
	var w fileReaderFrom
	if _, err := ls.SendTo(&w, 2000); err != io.ErrUnexpectedEOF {
		t.Fatalf("SendTo past the end: %v, want io.ErrUnexpectedEOF", err)
	}
	if readErr(ls) == nil {
		t.Errorf("readErr is nil after a short file: the response would not be cut")
	}
}
