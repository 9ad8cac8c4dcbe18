package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/smx-mta/smx/cmd/smxd/conf"
)

// A reload takes the smar section (but its greylisting), the map declarations and the policy
// options of each smtps section; every other change waits for a restart
// and is listed by its path.
func TestMergeReloadable(t *testing.T) {
	env := conf.Env{Hostname: func() (string, error) { return "mx.test", nil }, Getwd: func() (string, error) { return t.TempDir(), nil }}
	load := func(src string) *conf.Config {
		c, err := conf.LoadSource("smx.conf", []byte(src), "/etc/smx", env)
		require.NoError(t, err)
		return c
	}
	old := load(`queue_directory = /var/spool/smx;
smar { mailertable { file = mt; } }
smtps MTA { listen_socket { port = 25; } relay_clients = { loopback }; max_message_size = 10MB; }`)
	next := load(`queue_directory = /var/spool/smx2;
smar { mailertable { file = routes; } access_map { file = access; } greylisting { grey_wait = 1m; } }
map virt { type = hash; file = virtual; }
smtps MTA { listen_socket { port = 2525; } relay_clients = { loopback, 10.0.0.0/8 }; max_message_size = 20MB; }`)
	m := mergeReloadable(old, next)
	require.Equal(t, "/etc/smx/routes", m.SMAR.Mailertable.File)
	require.Equal(t, "/etc/smx/access", m.SMAR.AccessMap.File)
	require.Equal(t, []string{"loopback", "10.0.0.0/8"}, m.SMTPS[0].RelayClients)
	require.Equal(t, "/var/spool/smx", m.QueueDirectory, "not reloadable")
	require.Equal(t, old.SMTPS[0].MaxMessageSize, m.SMTPS[0].MaxMessageSize, "not reloadable")
	require.Equal(t, 25, m.SMTPS[0].ListenSocket.Port)
	require.Equal(t, old.SMAR.Greylisting, m.SMAR.Greylisting, "the greylisting database stays open as it is")
	require.Equal(t, []string{"CDB_base_directory", "qmgr.control_socket", "qmgr.event_log.archive_directory",
		"qmgr.event_log.directory", "queue_directory", "smar.greylisting.grey_wait", "smar.greylisting.main_DB_name", "smtpc.LMTP_socket", "smtps MTA.listen_socket.port",
		"smtps MTA.max_message_size"}, changedOptions(m, next))
	require.Empty(t, changedOptions(next, next))
}
