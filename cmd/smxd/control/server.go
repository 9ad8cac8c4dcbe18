package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Peer is the process at the other end of a connection, from SO_PEERCRED.
type Peer struct {
	UID, GID, PID int
	// User is the user name of UID, or "uid N" when it has none.
	User string
}

// Handler carries out the commands.
type Handler interface {
	// Handle carries out a valid request for peer and returns the result
	// to send (a value that encodes to JSON) or an error whose text is
	// sent to the client.
	Handle(ctx context.Context, peer Peer, req Request) (any, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, peer Peer, req Request) (any, error)

// Handle implements Handler.
func (f HandlerFunc) Handle(ctx context.Context, peer Peer, req Request) (any, error) {
	return f(ctx, peer, req)
}

// Listen creates the control socket at path, owned by uid:gid (-1 keeps
// the owner) with mode 0600, replacing a stale socket file left by a
// crash. It refuses to replace anything that is not a socket, and a socket
// another process still answers on.
func Listen(path string, uid, gid int) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("control socket %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: another smxd is answering on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket %s: remove stale socket: %w", path, err)
		}
	}
	// The umask makes the socket owner-only from the moment it exists;
	// chmod afterwards would leave a window.
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	if uid >= 0 || gid >= 0 {
		if err := os.Lchown(path, uid, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("control socket %s: %w", path, err)
		}
	}
	return ln, nil
}

// ServerOptions configure a Server.
type ServerOptions struct {
	// Handler carries out the commands (required).
	Handler Handler
	// AllowUID is the user besides root whose processes may connect:
	// smxd's own. Default: the process's effective uid.
	AllowUID *int
	// IdleTimeout closes a connection that sends nothing for this long.
	// Default 5 minutes.
	IdleTimeout time.Duration
	// Logger receives debug logs. Default: discard.
	Logger *slog.Logger
}

// Server answers requests on a control socket.
type Server struct {
	opts     ServerOptions
	allowUID int

	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]struct{}
	closing bool
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
}

// NewServer returns a Server.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.Handler == nil {
		return nil, errors.New("control: ServerOptions.Handler is required")
	}
	allow := os.Geteuid()
	if opts.AllowUID != nil {
		allow = *opts.AllowUID
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 5 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{opts: opts, allowUID: allow, conns: map[net.Conn]struct{}{}, ctx: ctx, cancel: cancel}, nil
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("control: server closed")

// Serve accepts connections on ln until Close. It returns ErrServerClosed
// after Close, or the accept error that stopped it.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.ln = ln
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("control: accept: %w", err)
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			c.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// Close stops accepting, lets requests being carried out finish until ctx
// is done, and closes every connection.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	ln := s.ln
	for c := range s.conns {
		// Wake connections waiting for a request; one in the middle of
		// a command finishes it first.
		c.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	var err error
	if ln != nil {
		err = ln.Close()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.cancel()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		<-done
	}
	s.cancel()
	return err
}

// PeerOf returns the credentials of the process at the other end of a
// unix socket connection.
func PeerOf(c net.Conn) (Peer, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{}, errors.New("not a unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return Peer{}, err
	}
	if credErr != nil {
		return Peer{}, fmt.Errorf("SO_PEERCRED: %w", credErr)
	}
	p := Peer{UID: int(cred.Uid), GID: int(cred.Gid), PID: int(cred.Pid), User: "uid " + strconv.Itoa(int(cred.Uid))}
	if u, err := user.LookupId(strconv.Itoa(p.UID)); err == nil {
		p.User = u.Username
	}
	return p, nil
}

func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	w := bufio.NewWriter(c)
	reply := func(r Response) {
		b, _ := json.Marshal(r)
		w.Write(b)
		w.WriteByte('\n')
		w.Flush()
	}
	fail := func(format string, args ...any) {
		reply(Response{Error: fmt.Sprintf(format, args...)})
	}
	peer, err := PeerOf(c)
	if err != nil {
		s.opts.Logger.Warn("control: peer credentials", "err", err)
		fail("cannot tell who you are: %v", err)
		return
	}
	if peer.UID != 0 && peer.UID != s.allowUID {
		s.opts.Logger.Warn("control: refused", "uid", peer.UID, "user", peer.User, "pid", peer.PID)
		fail("permission denied: %s (uid %d) may not use the control socket of smxd (uid %d)", peer.User, peer.UID, s.allowUID)
		return
	}
	r := bufio.NewReaderSize(c, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout))
		s.mu.Lock()
		closing := s.closing
		s.mu.Unlock()
		if closing {
			return
		}
		line, err := readLine(r, MaxRequest)
		if err != nil {
			if errors.Is(err, errTooLong) {
				fail("request longer than %d bytes", MaxRequest)
			}
			return
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		req, err := ParseRequest(line)
		if err != nil {
			fail("%v", err)
			return
		}
		if err := req.Validate(); err != nil {
			fail("%v", err)
			continue
		}
		c.SetReadDeadline(time.Time{})
		res, err := s.handle(peer, req)
		if err != nil {
			fail("%v", err)
			continue
		}
		b, err := json.Marshal(res)
		if err != nil {
			fail("encode result: %v", err)
			continue
		}
		reply(Response{OK: true, Result: b})
	}
}

// handle carries out one request; a panic in the handler fails that
// request alone, with its stack in the debug log, and smxd goes on.
func (s *Server) handle(peer Peer, req Request) (res any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.opts.Logger.Error("control: request panicked", "command", req.Command, "txn", req.Txn, "user", peer.User,
				"panic", r, "stack", string(debug.Stack()))
			res, err = nil, fmt.Errorf("internal error in %s: %v", req.Command, r)
		}
	}()
	return s.opts.Handler.Handle(s.ctx, peer, req)
}

var errTooLong = errors.New("line too long")

// ParseRequest decodes one request line: exactly one JSON object with
// the fields of Request and nothing else. It does not check that the
// command exists or has its arguments (see Request.Validate).
func ParseRequest(line []byte) (Request, error) {
	var req Request
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Request{}, fmt.Errorf("bad request: %w", err)
	}
	if dec.More() {
		return Request{}, errors.New("bad request: one JSON object per line")
	}
	return req, nil
}

// readLine reads one line of at most max bytes (newline included) and
// returns it without the newline.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, errTooLong
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}
