package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/smx-mta/smx/smtp/resolver/dnsclient/dnstest"
)

func runMapCmd(t *testing.T, config string, args ...string) (string, error) {
	t.Helper()
	cmd := newMapCmd(&globalFlags{configFile: config})
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func writeMapConfig(t *testing.T, dnsAddr string) string {
	dir := t.TempDir()
	files := map[string]string{
		"mt":      "my.dom lmtp:\nrelay.example 2525^esmtp:[127.0.0.1]\n.relay.example 2526^esmtp:[127.0.0.2]\n",
		"aliases": "postmaster: <root@my.dom>\nlist: <a@example.com> <b@example.com>\nowner-list: admin\nroot: local:\n",
		"access":  "to:root error:551 5.7.1 No mail to root\ncltaddr:127.0.0 relay\ncltname:.spam.example. error:550 5.7.1 No spam\n",
		"users":   "carol\n",
		"smx.conf": fmt.Sprintf(`hostname = mx.my.dom;
smar {
  mailertable { file = "mt"; }
  aliases { file = "aliases"; }
  access_map { file = "access"; }
  DNS { nameservers = { %s }; timeout = 2; retries = 0; }
  map users { type = hash; file = "users"; }
  local_user_map { name = users; }
}
smtpc { LMTP_socket = "/run/lmtp.sock"; }
`, dnsAddr),
	}
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	return filepath.Join(dir, "smx.conf")
}

func TestMapLookup(t *testing.T) {
	srv := dnstest.Start(t)
	config := writeMapConfig(t, srv.Addr)

	out, err := runMapCmd(t, config, "lookup", "--tag", "to:", "access_map", "root+x@my.dom")
	require.NoError(t, err)
	require.Equal(t, `  to:root+x@my.dom -> not found
  to:root++@my.dom -> not found
  to:root+*@my.dom -> not found
  to:root*@my.dom -> not found
  to:@my.dom -> not found
  to:root+x@.dom -> not found
  to:root++@.dom -> not found
  to:root+*@.dom -> not found
  to:root*@.dom -> not found
  to:@.dom -> not found
  to:root+x -> not found
  to:root++ -> not found
  to:root+* -> not found
  to:root* -> not found
not found
`, out)

	out, err = runMapCmd(t, config, "lookup", "--tag", "to:", "access_map", "root@my.dom")
	require.NoError(t, err)
	require.Contains(t, out, "  to:root -> error:551 5.7.1 No mail to root\nfound to:root: error:551 5.7.1 No mail to root\n")

	out, err = runMapCmd(t, config, "lookup", "--tag", "cltaddr:", "access_map", "127.0.0.5")
	require.NoError(t, err)
	require.Equal(t, "  cltaddr:127.0.0.5 -> not found\n  cltaddr:127.0.0 -> relay\nfound cltaddr:127.0.0: relay\n", out)

	// A domain goes through the seed's domain order; a cltname: one as
	// the client name check does it, with the trailing dot DNS gives.
	out, err = runMapCmd(t, config, "lookup", "mailertable", "Host.Sub.Relay.Example")
	require.NoError(t, err)
	require.Equal(t, "  host.sub.relay.example -> not found\n  .sub.relay.example -> not found\n"+
		"  .relay.example -> 2526^esmtp:[127.0.0.2]\nfound .relay.example: 2526^esmtp:[127.0.0.2]\n", out)
	out, err = runMapCmd(t, config, "lookup", "mailertable", "other.example")
	require.NoError(t, err)
	require.Equal(t, "  other.example -> not found\n  .example -> not found\n  . -> not found\nnot found\n", out)
	out, err = runMapCmd(t, config, "lookup", "--tag", "cltname:", "access_map", "mx.spam.example")
	require.NoError(t, err)
	require.Equal(t, "  cltname:mx.spam.example. -> not found\n  cltname:.spam.example. -> error:550 5.7.1 No spam\n"+
		"found cltname:.spam.example.: error:550 5.7.1 No spam\n", out)

	out, err = runMapCmd(t, config, "lookup", "--exact", "users", "Carol")
	require.NoError(t, err)
	require.Equal(t, "  Carol -> \nfound Carol: \n", out)

	_, err = runMapCmd(t, config, "lookup", "nosuch", "x")
	require.ErrorContains(t, err, "map nosuch is not declared")
}

func TestMapTest(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t, "example.com. 300 IN MX 10 mx.example.com.", "mx.example.com. 300 IN A 127.0.0.21")
	config := writeMapConfig(t, srv.Addr)

	out, err := runMapCmd(t, config, "test", "postmaster@my.dom")
	require.NoError(t, err)
	require.Contains(t, out, "  aliases: postmaster -> \"<root@my.dom>\"\n")
	require.Contains(t, out, "address: postmaster@my.dom\nexpands to: root@my.dom\n")

	out, err = runMapCmd(t, config, "test", "list@my.dom")
	require.NoError(t, err)
	require.Contains(t, out, "expands to: a@example.com b@example.com\nowner (envelope sender): owner-list@my.dom\n")

	out, err = runMapCmd(t, config, "test", "carol@my.dom")
	require.NoError(t, err)
	require.Contains(t, out, "mailer: lmtp\nlocal: yes\nsocket: /run/lmtp.sock\ndestination: lmtp:/run/lmtp.sock\n")

	out, err = runMapCmd(t, config, "test", "dave@my.dom")
	require.NoError(t, err)
	require.Contains(t, out, "permanent failure: 550 5.1.1 User unknown\n")

	out, err = runMapCmd(t, config, "test", "user@relay.example")
	require.NoError(t, err)
	require.Contains(t, out, "mailer: esmtp\nport: 2525\nhost: 127.0.0.1 preference 0: 127.0.0.1\ndestination: esmtp:[127.0.0.1]:2525\n")

	out, err = runMapCmd(t, config, "test", "user@example.com")
	require.NoError(t, err)
	require.Contains(t, out, "host: mx.example.com preference 10: 127.0.0.21\ndestination: esmtp:example.com:25\n")
	require.Contains(t, out, "  mailertable: example.com -> not found\n")

	out, err = runMapCmd(t, config, "test", "user@nx.example")
	require.NoError(t, err)
	require.Contains(t, out, "permanent failure: 550 5.1.2 Host unknown: nx.example\n")
}
