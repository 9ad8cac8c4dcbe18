package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/smx-mta/smx/cmd/smxd/conf"
	"github.com/smx-mta/smx/cmd/smxd/metrics"
)

// deadlineListener is a listener whose Accept a deadline can interrupt:
// *net.TCPListener and *net.UnixListener.
type deadlineListener interface {
	net.Listener
	SetDeadline(t time.Time) error
}

// boundListener is a socket smxd binds once at start, before it drops
// privileges, and keeps for its whole life: a component that restarts
// (after a failure, a restart request or a reload) serves the same socket
// again, because smxd may no longer be allowed to bind port 25.
type boundListener struct {
	name  string // "MTA[127.0.0.1:25]"
	ln    deadlineListener
	conns *metrics.Counter // accepted connections; nil counts none
	// final is set when smxd stops: closing a session then closes the
	// socket itself, so that new clients are refused at once (and try
	// another MX) instead of waiting in the backlog for the grace period.
	final atomic.Bool
}

// session returns a listener for one Serve call: closing it stops that
// Serve without closing the socket.
func (b *boundListener) session() net.Listener {
	b.ln.SetDeadline(time.Time{})
	return &listenerSession{b: b}
}

// Close closes the socket itself, when smxd exits.
func (b *boundListener) Close() error { return b.ln.Close() }

type listenerSession struct {
	b      *boundListener
	closed atomic.Bool
}

func (l *listenerSession) Accept() (net.Conn, error) {
	if l.closed.Load() {
		return nil, net.ErrClosed
	}
	c, err := l.b.ln.Accept()
	if l.closed.Load() {
		// Accept was woken by Close's deadline, or won a race with it: a
		// connection accepted now belongs to no server.
		if c != nil {
			c.Close()
		}
		return nil, net.ErrClosed
	}
	if err == nil && l.b.conns != nil {
		l.b.conns.Inc()
	}
	return c, err
}

// Close stops Accept by moving the socket's deadline into the past, or,
// when smxd stops, by closing the socket.
func (l *listenerSession) Close() error {
	if l.closed.CompareAndSwap(false, true) {
		if l.b.final.Load() {
			return l.b.ln.Close()
		}
		l.b.ln.SetDeadline(time.Now())
	}
	return nil
}

func (l *listenerSession) Addr() net.Addr { return l.b.ln.Addr() }

// bindSMTP binds the listeners of one smtps section.
func bindSMTP(s *conf.SMTPS) ([]*boundListener, error) {
	ls, err := s.Listeners()
	if err != nil {
		return nil, err
	}
	name := s.Name
	if name == "" {
		name = "smtps"
	}
	var out []*boundListener
	for _, l := range ls {
		var ln deadlineListener
		switch l.Network {
		case "unix":
			ln, err = listenUnix(l.Address, s.ListenSocket.Umask, s.ListenSocket.User, s.ListenSocket.Group)
		default:
			var tl net.Listener
			tl, err = net.Listen("tcp", l.Address)
			if err == nil {
				ln = tl.(*net.TCPListener)
			}
		}
		if err != nil {
			for _, b := range out {
				b.Close()
			}
			return nil, fmt.Errorf("%s: listen on %s: %w", smtpsModule(s.Name), l, err)
		}
		out = append(out, &boundListener{name: name + "[" + l.String() + "]", ln: ln})
	}
	return out, nil
}

// listenUnix binds a unix socket for an smtps listen_socket of type unix
// with its umask and owner.
func listenUnix(path string, umask int, userName, groupName string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, errors.New("another process is listening on it")
		}
		os.Remove(path)
	}
	old := syscall.Umask(umask)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(true)
	uid, gid := -1, -1
	if userName != "" {
		u, err := user.Lookup(userName)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen_socket user: %w", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
	}
	if groupName != "" {
		g, err := user.LookupGroup(groupName)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen_socket group: %w", err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	if uid >= 0 || gid >= 0 {
		if err := os.Lchown(path, uid, gid); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return ln, nil
}
