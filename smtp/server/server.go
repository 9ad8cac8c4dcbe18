package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smx-mta/smx/log/maillog"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("smtp server: closed")

// Server is one SMTP server (one `smtps NAME` section). It serves any
// number of listeners; each accepted connection is a session in a
// goroutine of its own. A panic in a session ends only that session.
type Server struct {
	opts  Options
	conns *ConnLimiter

	ctx    context.Context // cancelled by Close: sessions end at once
	cancel context.CancelFunc

	active   atomic.Int64
	closing  atomic.Bool
	mu       sync.Mutex
	lns      map[net.Listener]struct{}
	sessions map[*session]struct{}
	wg       sync.WaitGroup
}

// New returns a Server. IDs, Content, Log and Policy are required.
func New(opts Options) (*Server, error) {
	switch {
	case opts.IDs == nil:
		return nil, errors.New("smtp server: Options.IDs is required")
	case opts.Content == nil:
		return nil, errors.New("smtp server: Options.Content is required")
	case opts.Log == nil:
		return nil, errors.New("smtp server: Options.Log is required")
	case opts.Policy == nil:
		return nil, errors.New("smtp server: Options.Policy is required")
	case opts.ImplicitTLS && opts.TLS == nil:
		return nil, errors.New("smtp server: ImplicitTLS needs a TLS configuration")
	}
	if opts.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("smtp server: host name: %w", err)
		}
		opts.Hostname = h
	}
	opts = opts.withDefaults()
	conns := opts.Conns
	if conns == nil {
		conns = NewConnLimiter(ConnLimiterOptions{Now: opts.Now})
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		opts:     opts,
		conns:    conns,
		ctx:      ctx,
		cancel:   cancel,
		lns:      make(map[net.Listener]struct{}),
		sessions: make(map[*session]struct{}),
	}, nil
}

// Name returns the section name the server was built with.
func (s *Server) Name() string { return s.opts.Name }

// Sessions returns the number of open sessions.
func (s *Server) Sessions() int { return int(s.active.Load()) }

// Serve accepts connections on ln until Shutdown or Close, and returns
// ErrServerClosed then. Other accept errors that are not temporary end
// Serve with that error. ln is closed when Serve returns.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.lns, ln)
		s.mu.Unlock()
		ln.Close()
	}()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporaryAccept(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.opts.Debug.Warn("smtp server: accept", "err", err, "retry", backoff)
				select {
				case <-time.After(backoff):
				case <-s.ctx.Done():
					return ErrServerClosed
				}
				continue
			}
			return fmt.Errorf("smtp server %s: accept: %w", s.opts.Name, err)
		}
		backoff = 0
		s.wg.Add(1)
		go s.handle(conn)
	}
}

// isTemporaryAccept reports whether an accept error comes and goes (the
// process ran out of file descriptors, the peer gave up): those are
// retried, not fatal.
func isTemporaryAccept(err error) bool {
	return errors.Is(err, errEMFILE) || errors.Is(err, errENFILE) || errors.Is(err, errECONNABORTED)
}

// Shutdown stops accepting, lets open sessions finish until ctx is done,
// then closes what is left. Messages in the middle of their final dot are
// completed: their commit does not depend on ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.StopAccepting()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close stops accepting and ends every session at once (a transaction in
// progress is aborted and its client gets no 250). It waits for the
// sessions to finish.
func (s *Server) Close() error {
	s.StopAccepting()
	s.cancel()
	s.mu.Lock()
	for sess := range s.sessions {
		sess.conn.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// StopAccepting closes the listeners Serve was given, so that no new
// session starts, and leaves the open sessions alone. Shutdown and Close
// call it first; a caller that wants to know when the listeners are closed
// (to log it, say) calls it before them.
func (s *Server) StopAccepting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing.Store(true)
	for ln := range s.lns {
		ln.Close()
	}
}

// handle runs one session from accept to close.
func (s *Server) handle(conn net.Conn) {
	defer s.wg.Done()
	defer conn.Close()
	remote := addrPort(conn.RemoteAddr())
	if n := s.active.Add(1); n > int64(s.opts.MaxSessions) {
		s.active.Add(-1)
		s.refuse(conn, remote, "421 4.3.2 %s Too many sessions, try again later", "max_sessions")
		return
	}
	defer s.active.Add(-1)
	switch s.conns.Acquire(remote.Addr()) {
	case Admitted:
		defer s.conns.Release(remote.Addr())
	case RefusedRate:
		s.refuse(conn, remote, "421 4.7.0 %s Too many connections from your address, try again later", "max_connection_rate")
		return
	case RefusedCount:
		s.refuse(conn, remote, "421 4.7.0 %s Too many open connections from your address, try again later", "max_connections")
		return
	case RefusedTotal:
		s.refuse(conn, remote, "421 4.3.2 %s Too many sessions, try again later", "max_total_connections")
		return
	}
	sess := newSession(s, conn, remote)
	s.mu.Lock()
	if s.closing.Load() && s.ctx.Err() != nil {
		s.mu.Unlock()
		return
	}
	s.sessions[sess] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.sessions, sess)
		s.mu.Unlock()
	}()
	sess.run()
}

// refuse answers a connection that connection control turned away and
// closes it; the mail log gets a line saying why.
func (s *Server) refuse(conn net.Conn, remote netip.AddrPort, format, limit string) {
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, format+"\r\n", s.opts.Hostname)
	s.opts.MailLog.Line(maillog.LevelWarning).Addr("client_ip", remote.Addr()).Str("where", "connection").
		Str("status", "refused").Str("limit", limit).Write()
}

// addrPort returns the address of a TCP peer (or the zero AddrPort).
func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case interface{ AddrPort() netip.AddrPort }:
		return a.AddrPort()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap
	}
	return netip.AddrPort{}
}
