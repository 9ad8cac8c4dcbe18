package maps

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Dialer opens connections; *net.Dialer is one.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// SocketOptions configure a socket map.
type SocketOptions struct {
	// MapName is the map name sent in each request (option mapname).
	MapName string
	// Network is "unix" (option path) or "tcp" (options address and
	// port).
	Network string
	// Address is the socket path or "host:port".
	Address string
	// Timeout bounds one request: connecting, writing and reading the
	// reply. Zero means 5 s.
	Timeout time.Duration
	// MaxIdle is how many idle connections are kept for reuse. Zero
	// means 4.
	MaxIdle int
	// Dialer opens connections; nil means a net.Dialer.
	Dialer Dialer
}

// Socket is a map of type socket: lookups go to an external server over the
// sendmail socket map protocol (seed 002, section 10.1): the request
// "mapname key" and the reply "STATUS result" are netstrings. Connections
// are kept open and reused; a request on a reused connection that fails is
// sent once more on a fresh one (the server may have closed it while idle).
// OK is found, NOTFOUND not found, TEMP and TIMEOUT temporary failures and
// PERM a permanent one.
type Socket struct {
	name string
	opts SocketOptions

	mu   sync.Mutex
	idle []*socketConn
}

type socketConn struct {
	conn net.Conn
	r    *bufio.Reader
}

// NewSocket returns a socket map. It does not connect until the first
// lookup.
func NewSocket(name string, opts SocketOptions) (*Socket, error) {
	if opts.MapName == "" {
		return nil, fmt.Errorf("maps: socket map %s: no mapname", name)
	}
	if opts.Network != "unix" && opts.Network != "tcp" {
		return nil, fmt.Errorf("maps: socket map %s: network %q is neither unix nor tcp", name, opts.Network)
	}
	if opts.Address == "" {
		return nil, fmt.Errorf("maps: socket map %s: no address", name)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.MaxIdle == 0 {
		opts.MaxIdle = 4
	}
	if opts.Dialer == nil {
		opts.Dialer = &net.Dialer{}
	}
	return &Socket{name: name, opts: opts}, nil
}

// Lookup implements Map.
func (s *Socket) Lookup(ctx context.Context, key string) (string, bool, error) {
	key = Fold(key)
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	request := AppendNetstring(nil, s.opts.MapName+" "+key)

	c, reused, err := s.get(ctx)
	if err != nil {
		return "", false, s.fail(key, true, err)
	}
	reply, err := s.roundTrip(ctx, c, request)
	if err != nil && reused && ctx.Err() == nil {
		c.conn.Close()
		c, _, err = s.dial(ctx)
		if err != nil {
			return "", false, s.fail(key, true, err)
		}
		reply, err = s.roundTrip(ctx, c, request)
	}
	if err != nil {
		c.conn.Close()
		return "", false, s.fail(key, true, err)
	}
	status, result, err := parseSocketReply(reply)
	if err != nil {
		// The stream is out of step with us: do not reuse it.
		c.conn.Close()
		return "", false, s.fail(key, true, err)
	}
	s.put(c)
	switch status {
	case statusOK:
		return result, true, nil
	case statusNotFound:
		return "", false, nil
	case statusPerm:
		return "", false, s.fail(key, false, fmt.Errorf("server: PERM %s", result))
	case statusTimeout:
		return "", false, s.fail(key, true, fmt.Errorf("server: TIMEOUT %s", result))
	default:
		return "", false, s.fail(key, true, fmt.Errorf("server: TEMP %s", result))
	}
}

func (s *Socket) fail(key string, temporary bool, err error) error {
	return &LookupError{Map: s.name, Key: key, Temporary: temporary, Err: err}
}

func (s *Socket) roundTrip(ctx context.Context, c *socketConn, request []byte) (string, error) {
	deadline, _ := ctx.Deadline()
	if err := c.conn.SetDeadline(deadline); err != nil {
		return "", err
	}
	// Closing the connection is what unblocks I/O when ctx is cancelled
	// before the deadline.
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.conn.Write(request); err != nil {
		return "", err
	}
	return ReadNetstring(c.r, MaxNetstring)
}

func (s *Socket) get(ctx context.Context) (*socketConn, bool, error) {
	s.mu.Lock()
	if n := len(s.idle); n > 0 {
		c := s.idle[n-1]
		s.idle = s.idle[:n-1]
		s.mu.Unlock()
		return c, true, nil
	}
	s.mu.Unlock()
	return s.dial(ctx)
}

func (s *Socket) dial(ctx context.Context) (*socketConn, bool, error) {
	conn, err := s.opts.Dialer.DialContext(ctx, s.opts.Network, s.opts.Address)
	if err != nil {
		return nil, false, err
	}
	return &socketConn{conn: conn, r: bufio.NewReader(conn)}, false, nil
}

func (s *Socket) put(c *socketConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.idle) >= s.opts.MaxIdle {
		c.conn.Close()
		return
	}
	s.idle = append(s.idle, c)
}

// Close closes the idle connections.
func (s *Socket) Close() error {
	s.mu.Lock()
	idle := s.idle
	s.idle = nil
	s.mu.Unlock()
	var errs []error
	for _, c := range idle {
		errs = append(errs, c.conn.Close())
	}
	return errors.Join(errs...)
}
