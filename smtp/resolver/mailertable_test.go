package resolver

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct {
		rhs, want string // want is Route.String(), or the error
		socket    bool
	}{
		{"lmtp:", "lmtp:", true},
		{"LMTP:", "lmtp:", true},
		{"2525^esmtp:[127.0.0.1]", "2525^esmtp:[127.0.0.1]", false},
		{"esmtp:[10.1.2.3]", "esmtp:[10.1.2.3]", false},
		{"esmtp:SMART.HOST", "esmtp:smart.host", false},
		{"smart.host", "esmtp:smart.host", false},
		{"esmtp:[10.0.0.1] [10.0.0.2] backup.example.", "esmtp:[10.0.0.1] [10.0.0.2] backup.example", false},
		{"24^lmtp:[127.0.0.1]", "24^lmtp:[127.0.0.1]", false},
		{"esmtp:[IPv6:2001:db8::25]", "esmtp:[IPv6:2001:db8::25]", false},
		{"{ port=2525; protocol=esmtp; ipv4={127.0.0.1} }", "2525^esmtp:[127.0.0.1]", false},
		{"{ protocol=lmtp; port = 525; ipv4= { 10.11.12.13 } }", "525^lmtp:[10.11.12.13]", false},
		{"{ protocol = lmtp; }", "lmtp:", true},
		{"{ host = GATE.WAY }", "esmtp:gate.way", false},
		{"{ ipv4 = { 10.0.0.1, 10.0.0.2 }; }", "esmtp:[10.0.0.1] [10.0.0.2]", false},
		{"{ ipv4 = 10.0.0.1 }", "esmtp:[10.0.0.1]", false},
		{"{ host = \"quoted.example\"; }", "esmtp:quoted.example", false},

		{"", "mailertable: no hosts", false},
		{"esmtp:", "mailertable: no hosts", false},
		{"25^lmtp:", "mailertable: lmtp: with a port needs hosts", false},
		{"lmtp:[127.0.0.1]", "mailertable: lmtp: over TCP needs a port (port^lmtp:host)", false},
		{"0^esmtp:host", `mailertable: bad port "0"`, false},
		{"x^esmtp:host", `mailertable: bad port "x"`, false},
		{"esmtp:[300.1.2.3]", `mailertable: bad IPv4 literal "[300.1.2.3]"`, false},
		{"esmtp:[::1]", `mailertable: bad IPv4 literal "[::1]"`, false},
		{"esmtp:[10.0.0.1", `mailertable: unbalanced brackets in "[10.0.0.1"`, false},
		{"esmtp:bad_host!", `mailertable: bad host name "bad_host!"`, false},
		{"{ protocol = smtp; host = a }", `mailertable: unknown protocol "smtp"`, false},
		{"{ host = a; ipv4 = { 10.0.0.1 } }", "mailertable: host and ipv4 are exclusive", false},
		{"{ host = a", "mailertable: missing '}'", false},
		{"{ color = red }", `mailertable: unknown option "color"`, false},
		{"{ host = a } x", "mailertable: text after '}'", false},
		{"{ port = 25; port = 26; host = a }", "mailertable: port given twice", false},
	} {
		r, err := ParseRoute(tc.rhs)
		if err != nil {
			require.Equal(t, tc.want, err.Error(), tc.rhs)
			continue
		}
		require.Equal(t, tc.want, r.String(), tc.rhs)
		require.Equal(t, tc.socket, r.Socket, tc.rhs)
	}
}

func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"lmtp:", "2525^esmtp:[127.0.0.1]", "esmtp:SMART.HOST", "24^lmtp:[10.0.0.1] host.example",
		"{ port=2525; protocol=esmtp; ipv4={127.0.0.1} }", "{ protocol=lmtp; }", "{ host = \"gate.way\" }", "^^", "{{}}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rhs string) {
		r, err := ParseRoute(rhs)
		if err != nil {
			return
		}
		// What parses renders to the mailertable syntax, which parses to
		// the same route.
		again, err := ParseRoute(r.String())
		if err != nil {
			t.Fatalf("%q -> %q does not parse: %v", rhs, r.String(), err)
		}
		if again.String() != r.String() || again.Socket != r.Socket {
			t.Fatalf("%q -> %q -> %q", rhs, r.String(), again.String())
		}
	})
}

func TestCheckMailertable(t *testing.T) {
	require.NoError(t, CheckMailertable(map[string]string{"localhost": "lmtp:", ".": "esmtp:smart.host"}))
	require.ErrorContains(t, CheckMailertable(map[string]string{"bad.example": "esmtp:[1.2.3]"}), `entry "bad.example"`)
}
