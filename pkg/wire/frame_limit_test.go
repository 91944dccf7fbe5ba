package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"google.golang.org/protobuf/proto"
)

// frameHeader announces n bytes.
func frameHeader(n uint32) []byte {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], n)
	return hdr[:]
}

// allocated is how many bytes f allocates, on average over runs.
func allocated(runs int, f func()) uint64 {
	f() // warm up: lazily built protobuf descriptors are not the frame's
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

// A peer that announces the largest frame and sends nothing, or a little,
// of it must not make the reader reserve the announced size: before the
// fix every such stream cost 8 MiB.
func TestReadMsgAnnouncedSizeCostsNothing(t *testing.T) {
	for name, body := range map[string][]byte{
		"nothing":    nil,
		"one byte":   {0x0a},
		"a kilobyte": bytes.Repeat([]byte{0x0a}, 1000),
	} {
		t.Run(name, func(t *testing.T) {
			frame := append(frameHeader(MaxMessageSize), body...)
			var err error
			per := allocated(20, func() {
				var out Request
				err = ReadMsg(bytes.NewReader(frame), &out)
			})
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("a frame that ends early: got %v, want EOF or unexpected EOF", err)
			}
			if per > 64<<10 {
				t.Fatalf("a frame announcing %d bytes and sending %d allocated %d bytes per read, want well under 1 MiB", MaxMessageSize, len(body), per)
			}
			t.Logf("%d bytes allocated per read", per)
		})
	}
}

// The same through a capped read: an oversize announcement is refused
// before anything of the body is read or reserved.
func TestReadMsgMaxRefusesOversizeSessionOpen(t *testing.T) {
	open := &SessionOpen{Token: TokenPrefix + strings.Repeat("A", maxTokenLen), Host: "pc-7", Kind: SessionOpen_KIND_EXEC,
		Argv: []string{"sh", "-c", strings.Repeat("echo too big; ", MaxSessionOpenSize/14)}}
	var buf bytes.Buffer
	if err := WriteMsg(&buf, open); err != nil {
		t.Fatal(err)
	}
	body := buf.Len() - 4
	if body <= MaxSessionOpenSize {
		t.Fatalf("the test's SessionOpen is %d bytes, not over the limit", body)
	}
	r := bytes.NewReader(buf.Bytes())
	var out SessionOpen
	err := ReadMsgMax(r, &out, MaxSessionOpenSize)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	for _, want := range []string{"SessionOpen", "more than the 262144 allowed", "larger than the limit"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if r.Len() != body {
		t.Errorf("%d bytes of the refused body were read", body-r.Len())
	}
	// The uncapped read still takes it: the cap is the caller's choice.
	if err := ReadMsg(bytes.NewReader(buf.Bytes()), &out); err != nil || !proto.Equal(&out, open) {
		t.Fatalf("ReadMsg: %v", err)
	}
	// A session that announces the largest frame is refused at once,
	// whatever follows.
	err = ReadMsgMax(bytes.NewReader(frameHeader(MaxMessageSize)), &out, MaxSessionOpenSize)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("announced %d: got %v, want ErrTooLarge", MaxMessageSize, err)
	}
}

// The cap never refuses a real SessionOpen: the longest token the hosts
// take with the longest Linux argument (a script passed whole to sh -c)
// and more, or with the longest Windows path, or a break-glass sign-in on a
// terminal.
func TestReadMsgMaxTakesLargestRealSessionOpen(t *testing.T) {
	const maxArgStrlen = 128 << 10 // Linux MAX_ARG_STRLEN, NUL included
	token := TokenPrefix + strings.Repeat("A", maxTokenLen-len(TokenPrefix))
	host := strings.Repeat("h", 253)
	for name, open := range map[string]*SessionOpen{
		"exec": {Token: token, Host: host, Kind: SessionOpen_KIND_EXEC,
			Argv: []string{"/bin/sh", "-c", strings.Repeat("x", maxArgStrlen-1), "--", strings.Repeat("y", 64<<10)}},
		"windows exec": {Token: token, Host: host, Kind: SessionOpen_KIND_EXEC,
			Argv: []string{"powershell", "-EncodedCommand", strings.Repeat("目", 32767)}},
		"put": {Token: token, Host: host, Kind: SessionOpen_KIND_PUT,
			Path: strings.Repeat("目", 32767), Name: strings.Repeat("名", 255), Mode: 0o644},
		"break-glass shell": {Host: host, Kind: SessionOpen_KIND_SHELL,
			LocalUser: strings.Repeat("u", 256), LocalPassword: strings.Repeat("p", 4096),
			Terminal: &Terminal{Term: "xterm-256color", Size: &WindowSize{Rows: 1000, Cols: 1000}}},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteMsg(&buf, open); err != nil {
				t.Fatal(err)
			}
			if buf.Len() > MaxSessionOpenSize {
				t.Fatalf("a real SessionOpen of %d bytes is over MaxSessionOpenSize %d", buf.Len(), MaxSessionOpenSize)
			}
			var out SessionOpen
			if err := ReadMsgMax(&buf, &out, MaxSessionOpenSize); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&out, open) {
				t.Fatal("SessionOpen changed on the way")
			}
		})
	}
}

// A limit above MaxMessageSize is MaxMessageSize.
func TestReadMsgMaxClampsLimit(t *testing.T) {
	var out Request
	err := ReadMsgMax(bytes.NewReader(frameHeader(MaxMessageSize+1)), &out, 1<<30)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	err = ReadMsgMax(bytes.NewReader(frameHeader(0xffffffff)), &out, -1)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("negative limit: got %v, want ErrTooLarge", err)
	}
}

// The body grows as it arrives: frames of every size around the steps
// read back whole, one after the other (no byte of the next frame is
// taken), however the reader splits them.
func TestReadMsgGrowingBody(t *testing.T) {
	sizes := []int{0, 1, firstChunk - 1, firstChunk, firstChunk + 1, 2*firstChunk + 1, 100000, 1 << 20}
	var buf bytes.Buffer
	var want []*Artifact
	for _, n := range sizes {
		a := &Artifact{Name: strings.Repeat("a", n)}
		want = append(want, a)
		if err := WriteMsg(&buf, a); err != nil {
			t.Fatal(err)
		}
	}
	for name, wrap := range map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"halves":   iotest.HalfReader,
		"data+EOF": iotest.DataErrReader,
		"bytes":    iotest.OneByteReader,
	} {
		t.Run(name, func(t *testing.T) {
			r := wrap(bytes.NewReader(buf.Bytes()))
			for i, w := range want {
				var got Artifact
				if err := ReadMsg(r, &got); err != nil {
					t.Fatalf("frame %d (%d bytes): %v", i, sizes[i], err)
				}
				if !proto.Equal(&got, w) {
					t.Fatalf("frame %d (%d bytes) differs", i, sizes[i])
				}
			}
			var got Artifact
			if err := ReadMsg(r, &got); !errors.Is(err, io.EOF) {
				t.Fatalf("after the last frame: got %v, want EOF", err)
			}
		})
	}
}

// A body that ends early fails as io.ReadFull does: EOF when nothing of it
// came, unexpected EOF when some did; a reader's own error is passed on.
func TestReadMsgShortBody(t *testing.T) {
	var out Request
	if err := ReadMsg(bytes.NewReader(frameHeader(10)), &out); !errors.Is(err, io.EOF) {
		t.Errorf("no body: got %v, want EOF", err)
	}
	if err := ReadMsg(bytes.NewReader(append(frameHeader(10), 1, 2, 3)), &out); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("part of the body: got %v, want unexpected EOF", err)
	}
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(append(frameHeader(10), 1, 2, 3)), iotest.ErrReader(boom))
	if err := ReadMsg(r, &out); !errors.Is(err, boom) {
		t.Errorf("reader error: got %v, want boom", err)
	}
}

// readMsgBefore is ReadMsg as it was before the body grew with the bytes
// received: it reserves the announced size at once.
func readMsgBefore(r io.Reader, m proto.Message, limit int) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if int64(n) > int64(min(limit, MaxMessageSize)) {
		return ErrTooLarge
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return proto.Unmarshal(b, m)
}

// FuzzReadMsgMax checks the growing read against the one it replaced:
// the same message, the same kind of error, the same bytes consumed.
func FuzzReadMsgMax(f *testing.F) {
	var buf bytes.Buffer
	_ = WriteMsg(&buf, &SessionOpen{Token: "ott1.x", Host: "pc-1", Kind: SessionOpen_KIND_EXEC, Argv: []string{"uname", "-a"}})
	f.Add(buf.Bytes(), uint32(MaxSessionOpenSize), false)
	f.Add(buf.Bytes(), uint32(3), true)
	f.Add(append(frameHeader(2000), bytes.Repeat([]byte{0x12, 0x01, 'x'}, 700)...), uint32(MaxMessageSize), true)
	f.Add([]byte{0, 0, 0, 0}, uint32(0), false)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, uint32(0xffffffff), false)
	f.Fuzz(func(t *testing.T, b []byte, limit uint32, bytewise bool) {
		lim := int(min(limit, MaxMessageSize+1))
		var r io.Reader = bytes.NewReader(b)
		if bytewise {
			r = iotest.OneByteReader(r)
		}
		ref := bytes.NewReader(b)
		var got, want SessionOpen
		err := ReadMsgMax(r, &got, lim)
		wantErr := readMsgBefore(ref, &want, lim)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("got %v, before %v", err, wantErr)
		}
		for _, e := range []error{ErrTooLarge, io.EOF, io.ErrUnexpectedEOF} {
			if errors.Is(err, e) != errors.Is(wantErr, e) {
				t.Fatalf("got %v, before %v", err, wantErr)
			}
		}
		if err == nil && !proto.Equal(&got, &want) {
			t.Fatalf("got %v, before %v", &got, &want)
		}
		if !bytewise {
			if rest := r.(*bytes.Reader).Len(); rest != ref.Len() {
				t.Fatalf("%d bytes left, before %d", rest, ref.Len())
			}
		}
	})
}
