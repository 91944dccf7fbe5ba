package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"
)

// MaxMessageSize bounds one framed message. A signed policy of ten thousand
// items fits with room to spare; anything larger is refused before it is
// read.
const MaxMessageSize = 8 << 20

// MaxSessionOpenSize bounds a technician's SessionOpen, read before
// anything of the technician is verified. A real one holds an access or
// session token (at most 8 KiB encoded), a host name, a path (PATH_MAX is
// 4 KiB; a long Windows path under 100 KiB of UTF-8), and the argv of an
// exec: the technician's own command line, which the operating system
// bounds (one argument at most 128 KiB on Linux, a whole command line at
// most 32767 UTF-16 units on Windows). A script passed whole as one
// argument (sh -c "$(cat script)") fits; bigger input goes in with --stdin.
const MaxSessionOpenSize = 256 << 10

// firstChunk is what a frame's body may cost before any of it has
// arrived: the buffer grows with the bytes received, never with the size a
// peer merely announces.
const firstChunk = 512

// ErrTooLarge is returned for a frame that announces more than MaxMessageSize
// (or the smaller limit given to ReadMsgMax).
var ErrTooLarge = errors.New("message larger than the limit")

// WriteMsg writes m as a 4-byte big-endian length followed by its protobuf
// encoding.
func WriteMsg(w io.Writer, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %T: %w", m, err)
	}
	if len(b) > MaxMessageSize {
		return fmt.Errorf("encode %T: %d bytes: %w", m, len(b), ErrTooLarge)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write %T: %w", m, err)
	}
	return nil
}

// ReadMsg reads one frame written by WriteMsg into m.
func ReadMsg(r io.Reader, m proto.Message) error {
	return ReadMsgMax(r, m, MaxMessageSize)
}

// ReadMsgMax is ReadMsg for a frame of at most limit bytes (never more
// than MaxMessageSize): a bigger one is refused with ErrTooLarge before any
// of it is read. Use it for a message a peer sends before it is trusted.
func ReadMsgMax(r io.Reader, m proto.Message, limit int) error {
	limit = min(limit, MaxMessageSize)
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fmt.Errorf("read %T: %w", m, err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if int64(n) > int64(limit) {
		if limit == MaxMessageSize {
			return fmt.Errorf("read %T: %d bytes: %w", m, n, ErrTooLarge)
		}
		return fmt.Errorf("read %T: %d bytes, more than the %d allowed: %w", m, n, limit, ErrTooLarge)
	}
	b, err := readBody(r, int(n))
	if err != nil {
		return fmt.Errorf("read %T: %w", m, err)
	}
	if err := Unmarshal(b, m); err != nil {
		return fmt.Errorf("decode %T: %w", m, err)
	}
	return nil
}

// readBody reads exactly n bytes, as io.ReadFull would, into a buffer that
// starts small and doubles as the bytes arrive (up to n, never beyond): a
// peer that announces a large frame and sends little of it costs little.
// Like io.ReadFull it returns io.EOF when nothing of the body came and
// io.ErrUnexpectedEOF when part of it did.
func readBody(r io.Reader, n int) ([]byte, error) {
	b := make([]byte, 0, min(n, firstChunk))
	for len(b) < n {
		if len(b) == cap(b) {
			nb := make([]byte, len(b), min(2*cap(b), n))
			copy(nb, b)
			b = nb
		}
		k, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+k]
		if err != nil && len(b) < n {
			if err == io.EOF && len(b) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return b, nil
}

// Errorf builds an error Response.
func Errorf(code Error_Code, format string, args ...any) *Response {
	return &Response{Body: &Response_Error{Error: &Error{Code: code, Message: fmt.Sprintf(format, args...)}}}
}

// RemoteError is an Error answered by the other side.
type RemoteError struct {
	Code    Error_Code
	Message string
}

func (e *RemoteError) Error() string { return e.Message }

// AsError returns the response's error as a *RemoteError, or nil.
func (r *Response) AsError() error {
	if e := r.GetError(); e != nil {
		return &RemoteError{Code: e.GetCode(), Message: e.GetMessage()}
	}
	return nil
}
