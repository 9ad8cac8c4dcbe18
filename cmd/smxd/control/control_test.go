package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// serve starts a control server on a socket in a temporary directory
// with h, and returns the socket's path.
func serve(t *testing.T, h Handler) string {
	t.Helper()
	// Unix socket paths are short; t.TempDir() can be too long.
	dir, err := os.MkdirTemp("", "ctl")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "control.sock")
	ln, err := Listen(path, -1, -1)
	require.NoError(t, err)
	srv, err := NewServer(ServerOptions{Handler: h})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, srv.Close(ctx))
		require.ErrorIs(t, <-done, ErrServerClosed)
		_, err := os.Lstat(path)
		require.True(t, os.IsNotExist(err), "the socket is removed on close")
	})
	return path
}

func echo(ctx context.Context, peer Peer, req Request) (any, error) {
	if req.Command == CmdStatus {
		return Status{PID: peer.PID, Hostname: peer.User, Queue: QueueSizes{IQDB: 3}}, nil
	}
	if req.Txn == "S-unknown" {
		return nil, errors.New("scheduler: no such message in the queue: S-unknown")
	}
	if req.Txn == "S-panic" {
		panic("handler bug")
	}
	return ActionResult{Txn: req.Txn, Rcpt: req.Rcpt, Operator: peer.User}, nil
}

func TestCallsAndPeer(t *testing.T) {
	path := serve(t, HandlerFunc(echo))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "owner-only socket")

	ctx := context.Background()
	c, err := Dial(ctx, path)
	require.NoError(t, err)
	defer c.Close()
	var st Status
	require.NoError(t, c.Call(ctx, Request{Command: CmdStatus}, &st))
	require.Equal(t, os.Getpid(), st.PID, "SO_PEERCRED names this process")
	require.Equal(t, 3, st.Queue.IQDB)

	one := int32(1)
	var ar ActionResult
	require.NoError(t, c.Call(ctx, Request{Command: CmdHold, Txn: "S1", Rcpt: &one}, &ar))
	require.Equal(t, "S1", ar.Txn)
	require.Equal(t, int32(1), *ar.Rcpt)
	require.NotEmpty(t, ar.Operator)

	// Handler errors and invalid requests are answered, and the
	// connection stays usable.
	err = c.Call(ctx, Request{Command: CmdDelete, Txn: "S-unknown"}, nil)
	var se *ServerError
	require.ErrorAs(t, err, &se)
	require.Contains(t, se.Msg, "no such message")
	require.EqualError(t, c.Call(ctx, Request{Command: CmdRedirect, Txn: "S1"}, nil),
		"redirect needs a new address (addr)")
	// Without rcpt a redirect is of the whole message.
	var whole ActionResult
	require.NoError(t, c.Call(ctx, Request{Command: CmdRedirect, Txn: "S1", Addr: "a@b"}, &whole))
	require.Equal(t, "S1", whole.Txn)
	require.Nil(t, whole.Rcpt)
	require.EqualError(t, c.Call(ctx, Request{Command: "frobnicate"}, nil), `unknown command "frobnicate"`)
	// A handler that panics fails that request alone.
	require.EqualError(t, c.Call(ctx, Request{Command: CmdHold, Txn: "S-panic"}, nil), "internal error in hold: handler bug")
	require.NoError(t, c.Call(ctx, Request{Command: CmdStatus}, &st))
}

// raw sends text on a fresh connection and returns every line the server
// wrote before it closed the connection.
func raw(t *testing.T, path, text string) []string {
	t.Helper()
	c, err := net.Dial("unix", path)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() { c.Write([]byte(text)) }()
	var lines []string
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

func TestGarbageIsRefused(t *testing.T) {
	path := serve(t, HandlerFunc(echo))
	for _, tc := range []struct{ in, want string }{
		{"hello\n", "bad request: invalid character 'h'"},
		{`{"command":"status","rm":"-rf"}` + "\n", `bad request: json: unknown field "rm"`},
		{`{"command":"status"} {"command":"status"}` + "\n", "bad request: one JSON object per line"},
		{`["status"]` + "\n", "bad request: json: cannot unmarshal array"},
		{`{"command":"hold","rcpt":"one"}` + "\n", "bad request: json: cannot unmarshal string"},
		{strings.Repeat("x", MaxRequest+10) + "\n", "request longer than"},
	} {
		lines := raw(t, path, tc.in)
		require.Len(t, lines, 1, "%q: one error reply, then the connection is closed", tc.in)
		var resp Response
		require.NoError(t, json.Unmarshal([]byte(lines[0]), &resp))
		require.False(t, resp.OK)
		require.Contains(t, resp.Error, tc.want)
	}
	// A valid request before garbage is answered; the garbage ends the
	// connection.
	lines := raw(t, path, `{"command":"status"}`+"\n\x00\x01\n"+`{"command":"status"}`+"\n")
	require.Len(t, lines, 2)
	require.Contains(t, lines[0], `"ok":true`)
	require.Contains(t, lines[1], `"ok":false`)
}

func TestPeerRefused(t *testing.T) {
	// Only root and smxd's own user may connect: refuse everyone by
	// allowing a uid that is not ours, when we are not root ourselves.
	if os.Geteuid() == 0 {
		t.Skip("root may always connect; the end-to-end tests check another user with a real one")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "c.sock")
	ln, err := Listen(path, -1, -1)
	require.NoError(t, err)
	other := os.Geteuid() + 1
	srv, err := NewServer(ServerOptions{Handler: HandlerFunc(echo), AllowUID: &other})
	require.NoError(t, err)
	go srv.Serve(ln)
	defer srv.Close(context.Background())
	lines := raw(t, path, `{"command":"status"}`+"\n")
	require.Len(t, lines, 1)
	require.Contains(t, lines[0], "permission denied")
}

func TestListenRefusesToClobber(t *testing.T) {
	dir, err := os.MkdirTemp("", "ctl")
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "not-a-socket")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err = Listen(file, -1, -1)
	require.ErrorContains(t, err, "exists and is not a socket")

	// A live socket is not taken over; a stale one is replaced.
	path := filepath.Join(dir, "c.sock")
	ln, err := Listen(path, -1, -1)
	require.NoError(t, err)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, err = Listen(path, -1, -1)
	require.ErrorContains(t, err, "another smxd is answering")
	ln.SetUnlinkOnClose(false)
	ln.Close()
	ln2, err := Listen(path, -1, -1)
	require.NoError(t, err, "a stale socket left by a crash is replaced")
	ln2.Close()
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"command":"status"}`,
		`{"command":"hold","txn":"S0000000065A1B2C300","rcpt":1,"reason":"x"}`,
		`{"command":"flush","domain":"example.net"}`,
		`{"command":"redirect","txn":"S1","rcpt":0,"addr":"a@b"}`,
		`{"command":"restart","component":"qmgr"}`,
		`{"command":"status","x":1}`,
		`{"command":1}`,
		`{} {}`,
		`null`,
		"\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := ParseRequest(line)
		if err != nil {
			return
		}
		if req.Validate() != nil {
			return
		}
		// A valid request survives a round trip unchanged.
		b, err := json.Marshal(req)
		require.NoError(t, err)
		again, err := ParseRequest(b)
		require.NoError(t, err)
		require.Equal(t, req, again)
	})
}
