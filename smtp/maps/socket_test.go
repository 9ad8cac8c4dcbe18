package maps

import (
	"bufio"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// socketmapServer is a socket map server speaking the sendmail protocol,
// written for the tests. Keys are answered from table; a key "temp", "perm",
// "timeout" gets that status, "garbage" a reply that is no netstring,
// "close" a closed connection, and "slow" no answer until release is
// closed.
type socketmapServer struct {
	ln       net.Listener
	table    map[string]string
	mapName  string
	accepted atomic.Int32
	requests atomic.Int32
	release  chan struct{}
	gotSlow  chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func startSocketmap(t *testing.T, network string, table map[string]string) *socketmapServer {
	t.Helper()
	var ln net.Listener
	var err error
	if network == "unix" {
		ln, err = net.Listen("unix", filepath.Join(t.TempDir(), "sock"))
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	require.NoError(t, err)
	s := &socketmapServer{ln: ln, table: table, mapName: "virtuser", release: make(chan struct{}), gotSlow: make(chan struct{}, 16)}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.stop)
	return s
}

func (s *socketmapServer) stop() {
	select {
	case <-s.release:
	default:
		close(s.release)
	}
	s.ln.Close()
	s.closeConns()
	s.wg.Wait()
}

func (s *socketmapServer) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

func (s *socketmapServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.accepted.Add(1)
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Add(1)
		go s.handle(c)
	}
}

func (s *socketmapServer) handle(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		req, err := ReadNetstring(r, MaxNetstring)
		if err != nil {
			return
		}
		s.requests.Add(1)
		name, key, _ := strings.Cut(req, " ")
		var reply string
		switch {
		case name != s.mapName:
			reply = "PERM unknown map " + name
		case key == "temp":
			reply = "TEMP try later"
		case key == "perm":
			reply = "PERM broken"
		case key == "timeout":
			reply = "TIMEOUT backend slow"
		case key == "garbage":
			c.Write([]byte("not a netstring"))
			return
		case key == "close":
			return
		case key == "slow":
			s.gotSlow <- struct{}{}
			<-s.release
			return
		default:
			if v, ok := s.table[key]; ok {
				reply = "OK " + v
			} else {
				reply = "NOTFOUND "
			}
		}
		if _, err := c.Write(AppendNetstring(nil, reply)); err != nil {
			return
		}
	}
}

func TestSocketMap(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			srv := startSocketmap(t, network, map[string]string{"user@example.com": "resolved.address@example.com"})
			spec := Spec{Name: "sm", Type: TypeSocket, MapName: "virtuser", Timeout: 2 * time.Second}
			if network == "unix" {
				spec.Path = srv.ln.Addr().String()
			} else {
				addr := srv.ln.Addr().(*net.TCPAddr)
				spec.Address, spec.Port = addr.IP.String(), addr.Port
			}
			set, err := Open([]Spec{spec})
			require.NoError(t, err)
			defer set.Close()
			m, _ := set.Get("sm")
			ctx := context.Background()

			v, found, err := m.Lookup(ctx, "User@Example.COM")
			require.NoError(t, err)
			require.True(t, found)
			require.Equal(t, "resolved.address@example.com", v)

			_, found, err = m.Lookup(ctx, "nobody@example.com")
			require.NoError(t, err)
			require.False(t, found)

			for key, temporary := range map[string]bool{"temp": true, "timeout": true, "perm": false} {
				_, _, err = m.Lookup(ctx, key)
				var le *LookupError
				require.ErrorAs(t, err, &le, key)
				require.Equal(t, temporary, le.Temporary, key)
			}
			require.Equal(t, int32(1), srv.accepted.Load(), "one connection reused for all lookups")

			_, _, err = m.Lookup(ctx, "garbage")
			require.True(t, IsTemporary(err))
			v, found, err = m.Lookup(ctx, "user@example.com")
			require.NoError(t, err, "a fresh connection after a broken reply")
			require.True(t, found)
			require.Equal(t, "resolved.address@example.com", v)
		})
	}
}

func TestSocketMapReconnect(t *testing.T) {
	srv := startSocketmap(t, "unix", map[string]string{"k": "v"})
	m, err := NewSocket("sm", SocketOptions{MapName: "virtuser", Network: "unix", Address: srv.ln.Addr().String()})
	require.NoError(t, err)
	defer m.Close()
	ctx := context.Background()
	_, found, err := m.Lookup(ctx, "k")
	require.NoError(t, err)
	require.True(t, found)
	// The server drops its idle connections (a restart, an idle timeout):
	// the next lookup notices and retries on a new connection.
	srv.closeConns()
	v, found, err := m.Lookup(ctx, "k")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "v", v)
	require.Equal(t, int32(2), srv.accepted.Load())

	// A connection that closes on the request itself fails the lookup
	// after one retry, temporarily.
	_, _, err = m.Lookup(ctx, "close")
	require.True(t, IsTemporary(err))
}

func TestSocketMapTimeout(t *testing.T) {
	srv := startSocketmap(t, "tcp", nil)
	m, err := NewSocket("sm", SocketOptions{MapName: "virtuser", Network: "tcp",
		Address: srv.ln.Addr().String(), Timeout: 50 * time.Millisecond})
	require.NoError(t, err)
	defer m.Close()
	_, _, err = m.Lookup(context.Background(), "slow")
	var le *LookupError
	require.ErrorAs(t, err, &le)
	require.True(t, le.Temporary)
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "%v", err)

	// Cancelling the caller's context stops the lookup too.
	ctx, cancel := context.WithCancel(context.Background())
	m2, err := NewSocket("sm", SocketOptions{MapName: "virtuser", Network: "tcp",
		Address: srv.ln.Addr().String(), Timeout: time.Minute})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { _, _, err := m2.Lookup(ctx, "slow"); done <- err }()
	// Wait until the server has the request, then cancel.
	<-srv.gotSlow // the first, timed-out lookup
	select {
	case <-srv.gotSlow:
	case <-time.After(5 * time.Second):
		t.Fatal("server never got the request")
	}
	cancel()
	select {
	case err := <-done:
		require.True(t, IsTemporary(err))
	case <-time.After(5 * time.Second):
		t.Fatal("lookup did not stop on cancel")
	}

	// No server at all: a temporary failure.
	m3, err := NewSocket("sm", SocketOptions{MapName: "x", Network: "unix", Address: filepath.Join(t.TempDir(), "none")})
	require.NoError(t, err)
	_, _, err = m3.Lookup(context.Background(), "k")
	require.True(t, IsTemporary(err))
}

func FuzzNetstring(f *testing.F) {
	for _, s := range []string{"11:hello there,", "0:,", "8:NOTFOUND,", "31:OK resolved.address@example.com,",
		"55:TEMP this text explains that we had a temporary failure,", "3:ab,", "01:a,", ":,", "999999999:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r := bufio.NewReader(strings.NewReader(in))
		s, err := ReadNetstring(r, 1<<16)
		if err != nil {
			return
		}
		if enc := string(AppendNetstring(nil, s)); !strings.HasPrefix(in, enc) {
			t.Fatalf("%q read as %q, which encodes as %q", in, s, enc)
		}
		parseSocketReply(s)
	})
}
