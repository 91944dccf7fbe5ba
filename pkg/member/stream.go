package member

import (
	"context"
	"fmt"

	"github.com/quic-go/quic-go"
)

// OpenStream opens a stream on the live connection for an exchange longer
// than one call, such as a technician session the coordinator brokers to
// this member; the caller owns the stream and closes it.
func (c *Client) OpenStream(ctx context.Context) (*quic.Stream, error) {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return nil, fmt.Errorf("%w (%s)", ErrOffline, c.addr)
	}
	return conn.OpenStreamSync(ctx)
}
