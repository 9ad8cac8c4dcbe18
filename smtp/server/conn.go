package server

import (
	"net"
	"time"
)

// deadlineConn sets a fresh deadline before every read and write, so that
// io_timeout bounds each operation, and never lets a read deadline pass
// the end of the current DATA or BDAT transfer (dataDeadline).
type deadlineConn struct {
	net.Conn
	timeout      time.Duration
	now          func() time.Time
	dataDeadline time.Time // zero outside a message transfer
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	d := c.now().Add(c.timeout)
	if !c.dataDeadline.IsZero() && c.dataDeadline.Before(d) {
		d = c.dataDeadline
	}
	c.Conn.SetReadDeadline(d)
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(c.now().Add(c.timeout))
	return c.Conn.Write(p)
}
