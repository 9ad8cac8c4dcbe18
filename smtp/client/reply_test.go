package client

import (
	"bufio"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		in       string
		code     int
		enhanced string
		lines    []string
		err      bool
	}{
		{in: "250 ok\r\n", code: 250, lines: []string{"ok"}},
		{in: "550-5.1.1 first\r\n550 5.1.1 second\r\n", code: 550, enhanced: "5.1.1", lines: []string{"first", "second"}},
		{in: "250-mx.test\n250 PIPELINING\n", code: 250, lines: []string{"mx.test", "PIPELINING"}},
		{in: "220\r\n", code: 220, lines: []string{""}},
		{in: "451 5.0.0 mismatch\r\n", code: 451, lines: []string{"5.0.0 mismatch"}},
		{in: "250-a\r\n251 b\r\n", err: true},
		{in: "25 x\r\n", err: true},
		{in: "250x\r\n", err: true},
		{in: "199 x\r\n", err: true},
		{in: "250-a\r\n", err: true},
		{in: "250 " + strings.Repeat("x", maxReplyLine) + "\r\n", err: true},
	} {
		rep, err := readReply(bufio.NewReaderSize(strings.NewReader(tc.in), 16))
		if tc.err {
			require.Error(t, err, "%q", tc.in)
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		require.Equal(t, tc.code, rep.Code)
		require.Equal(t, tc.enhanced, rep.Enhanced)
		require.Equal(t, tc.lines, rep.Lines)
	}
}

func TestExtensions(t *testing.T) {
	rep, err := readReply(bufio.NewReader(strings.NewReader("250-mx.test Hello\r\n250-pipelining\r\n250-SIZE 1000\r\n250-AUTH PLAIN LOGIN\r\n250 DSN\r\n")))
	require.NoError(t, err)
	ext := parseExtensions(rep)
	require.True(t, ext.Has("PIPELINING"))
	require.True(t, ext.Has("DSN"))
	require.False(t, ext.Has("MX.TEST"))
	require.Equal(t, "PLAIN LOGIN", ext["AUTH"])
	n, ok := ext.Size()
	require.True(t, ok)
	require.EqualValues(t, 1000, n)
	require.Equal(t, "mx.test", serverName(rep))
}

func TestXtextAndParams(t *testing.T) {
	require.Equal(t, "a+2Bb+3Dc+20d", xtext("a+b=c d"))
	require.Equal(t, "rfc822;x+2By@example.com", orcptParam("rfc822;x+y@example.com", false))
	require.Equal(t, "", orcptParam("utf-8;jörg@example.com", false))
	require.Equal(t, `utf-8;jörg\x{2B}x@example.com`, orcptParam("utf-8;jörg+x@example.com", true))
	require.Equal(t, "", orcptParam("garbage", false))
	require.Equal(t, "NEVER", notifyParam(1))
	require.Equal(t, "", notifyParam(0))
}
