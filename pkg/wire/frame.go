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

// ErrTooLarge is returned for a frame that announces more than MaxMessageSize.
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
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fmt.Errorf("read %T: %w", m, err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxMessageSize {
		return fmt.Errorf("read %T: %d bytes: %w", m, n, ErrTooLarge)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("read %T: %w", m, err)
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("decode %T: %w", m, err)
	}
	return nil
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
