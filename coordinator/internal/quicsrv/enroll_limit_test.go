package quicsrv

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// An enrolment request is read before anything of its sender is known.
// Read like any request (up to MaxMessageSize, 8 MiB), anyone who reaches
// the QUIC port could make the coordinator buffer 8 MiB per connection,
// and one source holds maxEnrollConnsPerSource (128) of them: 1 GiB per
// address. A frame larger than an enrolment request can be is refused
// before its body is read, and the sender stopped and told why.
func TestEnrolmentFrameLargerThanARequestIsRefusedBeforeItsBodyIsRead(t *testing.T) {
	_, ctx, dial, _ := limitServer(t, wire.ALPNEnroll)
	c := dial()
	defer c.CloseWithError(0, "")
	str, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const size = wire.MaxMessageSize
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], size)
	if _, err := str.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	// The body all but its last byte, so that the coordinator holds it and
	// waits: the writes go through only as fast as the coordinator reads
	// (QUIC flow control), so a body written whole was read whole.
	str.SetWriteDeadline(time.Now().Add(20 * time.Second))
	chunk := make([]byte, 64<<10)
	written := 0
	for written < size-1 {
		n, err := str.Write(chunk[:min(len(chunk), size-1-written)])
		written += n
		if err != nil {
			// Refused: the connection closed, saying why.
			<-c.Context().Done()
			var appErr *quic.ApplicationError
			if !errors.As(context.Cause(c.Context()), &appErr) || !strings.Contains(appErr.ErrorMessage, "enrolment request larger than") {
				t.Fatalf("refused with %v, want the reason", context.Cause(c.Context()))
			}
			return
		}
	}
	t.Fatalf("the coordinator read %d bytes of one unauthenticated enrolment frame (announced %d) before checking anything; "+
		"one source may hold %d such connections (%d MiB); want frames over a few KiB refused before the body is read",
		written, size, maxEnrollConnsPerSource, maxEnrollConnsPerSource*size>>20)
}

// The bound leaves a real enrolment request room to spare: the longest
// hostname enrolment takes, named in the certificate request too, and a
// token far longer than the coordinator's.
func TestLargestEnrolmentRequestIsWellWithinTheBound(t *testing.T) {
	key, err := tlsutil.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	hostname := strings.Repeat("h", 253)
	csr, err := tlsutil.NewCSR(key, hostname)
	if err != nil {
		t.Fatal(err)
	}
	req := &wire.Request{Body: &wire.Request_Enroll{Enroll: &wire.EnrollRequest{
		Token: strings.Repeat("t", 512), Hostname: hostname, Role: wire.Role_ROLE_AGENT, Csr: csr}}}
	if n := proto.Size(req); n*8 > maxEnrollRequest {
		t.Fatalf("an enrolment request of %d bytes leaves less than 8× room in the %d-byte bound", n, maxEnrollRequest)
	}
}
