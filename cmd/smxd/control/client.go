package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// Client is a connection to a control socket.
type Client struct {
	conn net.Conn
	r    *bufio.Reader
}

// Dial connects to the control socket at path.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w (is smxd running, and are you its user or root?)", path, err)
	}
	return &Client{conn: c, r: bufio.NewReaderSize(c, 64<<10)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// ServerError is an error the daemon answered with.
type ServerError struct{ Msg string }

// Error returns the daemon's message.
func (e *ServerError) Error() string { return e.Msg }

// Call sends req and decodes the result into result (which may be nil).
// An error reply is returned as a *ServerError.
func (c *Client) Call(ctx context.Context, req Request, result any) error {
	if deadline, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(deadline)
	} else {
		c.conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Now()) })
	defer stop()
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		// The daemon may have refused us and closed the connection
		// before reading the request: its reason is waiting to be read.
		if line, rerr := c.r.ReadBytes('\n'); rerr == nil {
			var resp Response
			if json.Unmarshal(line, &resp) == nil && !resp.OK && resp.Error != "" {
				return &ServerError{Msg: resp.Error}
			}
		}
		return fmt.Errorf("control: send: %w", c.ctxErr(ctx, err))
	}
	// Results (a configuration dump) can be long: no line limit here,
	// the daemon is trusted.
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("control: receive: %w", c.ctxErr(ctx, err))
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return fmt.Errorf("control: bad reply: %w", err)
	}
	if !resp.OK {
		return &ServerError{Msg: resp.Error}
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(resp.Result, result); err != nil {
		return fmt.Errorf("control: bad result: %w", err)
	}
	return nil
}

func (c *Client) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return errors.Join(ctx.Err(), err)
	}
	return err
}
