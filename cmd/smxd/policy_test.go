package main

import (
	"net/textproto"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// dialSMTP opens a raw SMTP conversation with the test daemon, past the
// greeting and EHLO.
func dialSMTP(t *testing.T, td *testDaemon) *textproto.Conn {
	t.Helper()
	c, err := textproto.Dial("tcp", "127.0.0.1:"+strconv.Itoa(td.port))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, _, err = c.ReadResponse(220)
	require.NoError(t, err)
	require.NoError(t, c.PrintfLine("EHLO client.test"))
	_, _, err = c.ReadResponse(250)
	require.NoError(t, err)
	return c
}

// command sends one command and returns the reply's code and text.
func command(t *testing.T, c *textproto.Conn, cmd string) (int, string) {
	t.Helper()
	require.NoError(t, c.PrintfLine("%s", cmd))
	code, msg, err := c.ReadResponse(0)
	if _, ok := err.(*textproto.Error); err != nil && !ok {
		require.NoError(t, err)
	}
	return code, msg
}

// VRFY with the smtps flag VRFY answers from SMAR as the policy checker
// does: 250 for a user of a local domain, 550 for an unknown one, and 252
// for an address in a domain that is not local, even when its local part
// is a local user's name.
func TestVRFY(t *testing.T) {
	td := startDaemonWith(t, daemonConfig{
		mailertable: "my.dom lmtp:\n. 2525^esmtp:[127.0.0.1]\n",
		smar:        "map users { type = hash; file = users; } local_user_map { name = users; }",
		smtps:       "flags = { VRFY };",
		files:       map[string]string{"users": "carol\n"},
	})
	c := dialSMTP(t, td)
	code, msg := command(t, c, "VRFY carol@my.dom")
	require.Equal(t, 250, code, msg)
	code, msg = command(t, c, "VRFY <dave@my.dom>")
	require.Equal(t, 550, code, msg)
	require.Contains(t, msg, "5.1.1")
	code, msg = command(t, c, "VRFY carol@example.com")
	require.Equal(t, 252, code, "not a local domain: nobody here can verify it (%s)", msg)
}
