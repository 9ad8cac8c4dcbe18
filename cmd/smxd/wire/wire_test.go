package wire

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smx-mta/smx/cmd/smxd/conf"
	"github.com/smx-mta/smx/scheduler"
	"github.com/smx-mta/smx/smtp/policy"
	"github.com/smx-mta/smx/smtp/policy/greylist"
	"github.com/smx-mta/smx/smtp/server"
)

func load(t *testing.T, dir, src string) *conf.Config {
	t.Helper()
	env := conf.Env{Hostname: func() (string, error) { return "mx.test", nil }, Getwd: func() (string, error) { return dir, nil }}
	c, err := conf.LoadSource(filepath.Join(dir, "smx.conf"), []byte(src), dir, env)
	require.NoError(t, err)
	return c
}

func TestReadQMGRConf(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "qmgr.conf")
	require.NoError(t, os.WriteFile(f, []byte("oci:10.1 4\nocm:10.1 20\nocm: 50\nicr:192.0.2 50\nicm:192.0.2.7 5\nsmtpc_session_conf:x y\n"), 0o644))
	qc, err := ReadQMGRConf(f)
	require.NoError(t, err)
	require.Equal(t, []scheduler.ConnLimit{{Key: "", Max: 50}, {Key: "10.1", Initial: 4, Max: 20}}, qc.Outgoing)
	require.Equal(t, []server.ConnOverride{
		{Net: netip.MustParsePrefix("192.0.2.0/24"), Rate: 50},
		{Net: netip.MustParsePrefix("192.0.2.7/32"), Max: 5},
	}, qc.Incoming)

	require.NoError(t, os.WriteFile(f, []byte("oci:10.1 many\n"), 0o644))
	_, err = ReadQMGRConf(f)
	require.EqualError(t, err, f+`: oci:10.1: expected a number of connections, found "many"`)
	require.NoError(t, os.WriteFile(f, []byte("icm:10.1.2.3.4 5\n"), 0o644))
	_, err = ReadQMGRConf(f)
	require.ErrorContains(t, err, "neither an IP address nor an IPv4 net")

	qc, err = ReadQMGRConf("")
	require.NoError(t, err)
	require.Empty(t, qc.Outgoing)
}

// The embedded default names map files a fresh checkout does not have:
// they are left out with a note. A file the configuration names must
// exist.
func TestMapSpecsDefaultFiles(t *testing.T) {
	dir := t.TempDir()
	c := load(t, dir, "queue_directory = spool; smtps MTA { listen_socket { port = 2525; } flags = { access }; }")
	specs, notes, err := MapSpecs(c, true)
	require.NoError(t, err)
	require.Empty(t, specs)
	require.Len(t, notes, 3)
	require.Contains(t, notes[0], "mailertable: default file "+filepath.Join(dir, "mt")+" does not exist")
	s, err := OpenSMAR(c)
	require.NoError(t, err)
	require.Nil(t, s.Access)
	res := s.Resolver.Resolve(context.Background(), "u@[127.0.0.1]")
	require.Nil(t, res.Failure, "an address literal routes without maps or DNS")
	s.Close()

	c = load(t, dir, "queue_directory = spool; smar { mailertable { file = routes; } } smtps MTA { listen_socket { port = 2525; } }")
	_, err = OpenSMAR(c)
	require.ErrorContains(t, err, filepath.Join(dir, "routes"))

	require.NoError(t, os.WriteFile(filepath.Join(dir, "routes"), []byte(". esmtp:[127.0.0.1]\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "access"), []byte("to:@closed.test reject\n"), 0o644))
	c = load(t, dir, `queue_directory = spool; smar { mailertable { file = routes; } access_map { file = access; } }
smtps MTA { listen_socket { port = 2525; } flags = { access }; relay_clients = { 10.0.0.0/8 }; }
smtps MSA { listen_socket { port = 2587; } }`)
	s, err = OpenSMAR(c)
	require.NoError(t, err)
	defer s.Close()
	require.NotNil(t, s.Access)
	require.ElementsMatch(t, []string{filepath.Join(dir, "routes"), filepath.Join(dir, "access")}, s.Files)
	res = s.Resolver.Resolve(context.Background(), "u@anywhere.test")
	require.Nil(t, res.Failure)
	require.Equal(t, "esmtp:[127.0.0.1]:25", res.Destination)

	// The MTA checks the access map and relays for 10/8; the MSA does
	// neither.
	ctx := context.Background()
	mta, err := s.NewChecker(c, &c.SMTPS[0], nil)
	require.NoError(t, err)
	sess, d := mta.Connect(ctx, policy.ClientInfo{Addr: netip.MustParseAddr("10.1.2.3")})
	require.Equal(t, policy.Accept, d.Action)
	mta.Mail(ctx, sess, "a@b.test")
	require.Equal(t, policy.Reject, mta.Rcpt(ctx, sess, "x@closed.test").Action)
	require.Equal(t, policy.Accept, mta.Rcpt(ctx, sess, "x@open.test").Action)
	msa, err := s.NewChecker(c, &c.SMTPS[1], nil)
	require.NoError(t, err)
	sess, _ = msa.Connect(ctx, policy.ClientInfo{Addr: netip.MustParseAddr("10.1.2.3")})
	msa.Mail(ctx, sess, "a@b.test")
	require.Equal(t, policy.Reject, msa.Rcpt(ctx, sess, "x@open.test").Action, "no relaying without relay_clients")
}

func TestOptionsFromConfig(t *testing.T) {
	dir := t.TempDir()
	c := load(t, dir, `queue_directory = spool;
qmgr { AQ_max_entries = 1000; retry_min_delay = 1m; retry_max_delay = 2h; IQDB { max_cache_entries = 500; }
       DSN_handling { merge_delay_max = 0; } smtpc { initial_connections = 3; max_connections = 7; } flags = { -reuse_connection }; }
smtps MTA { listen_socket { port = 2525; } max_message_size = 1MB; max_line_length = 2KB; io_timeout = 90s; wait_for_smar = 20s;
            flags = { soft_bounce, -starttls, -smtputf8, -pipelining, -chunking, delay_greylisting_error_until_DATA }; }
smtps MSA { listen_socket { port = 2587; } }
smtpc { connect_only_to = 127.0.0.1; remote_port = 2526; io_timeout = 1m; flags = { -starttls }; }`)
	so := SchedulerOptions(c, QMGRConf{})
	require.Equal(t, 1000, so.AQMaxEntries)
	require.Equal(t, 500, so.IQDBMaxEntries)
	require.Equal(t, time.Minute, so.RetryMinDelay)
	require.Equal(t, 2*time.Hour, so.RetryMaxDelay)
	require.Negative(t, so.MergeDelayMax, "merge_delay_max = 0 means no wait, which the scheduler reads from a negative value, not its default")
	require.Equal(t, 3, so.InitialConnections)
	require.Equal(t, 7, so.MaxConnections)
	require.True(t, so.NoReuseConnection)
	require.Equal(t, "mx.test", so.Hostname)

	sv, err := ServerOptions(c, &c.SMTPS[0])
	require.NoError(t, err)
	require.Equal(t, "MTA", sv.Name)
	require.Equal(t, int64(1<<20), sv.MaxMessageSize)
	require.Equal(t, 2048, sv.MaxLineLength)
	require.Equal(t, 90*time.Second, sv.IOTimeout)
	require.True(t, sv.SoftBounce)
	require.Nil(t, sv.TLS)
	require.Equal(t, 20*time.Second, sv.WaitForSMAR)
	require.True(t, sv.NoSMTPUTF8, "flags -smtputf8")
	require.True(t, sv.NoPipelining, "flags -pipelining")
	require.True(t, sv.NoChunking, "flags -chunking")
	require.True(t, sv.DelayGreylistingErrorUntilDATA)

	// The defaults: every extension offered, wait_for_smar one minute.
	msa, err := ServerOptions(c, &c.SMTPS[1])
	require.NoError(t, err)
	require.False(t, msa.NoSMTPUTF8)
	require.False(t, msa.NoPipelining)
	require.False(t, msa.NoChunking)
	require.False(t, msa.DelayGreylistingErrorUntilDATA)
	require.Equal(t, time.Minute, msa.WaitForSMAR)

	co, err := ClientOptions(c)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", co.ConnectOnlyTo)
	require.Equal(t, 2526, co.RemotePort)
	require.True(t, co.DisableSTARTTLS)
	require.Equal(t, "mx.test", co.HeloName)

	lo := LogOptions(c)
	require.Zero(t, lo.MaxCommitDelay, "the group commit does not pause by default")
	require.Equal(t, filepath.Join(dir, "spool", "cdb"), CDBDirectory(c))
}

// OpenMaps opens the map asked for and the maps its sequence needs, and
// nothing else, so that one map that does not load (here an access map
// whose file is missing) does not stop a lookup in another; OpenResolver
// leaves the access map out.
func TestOpenMapsOnlyWhatIsAsked(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"routes":  ". esmtp:[127.0.0.1]\n",
		"virtual": "a@v.test b@v.test\n",
		"extra":   "c@v.test d@v.test\n",
		"other":   "x y\n",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	c := load(t, dir, `queue_directory = spool;
map virtual { type = hash; file = virtual; }
map extra { type = hash; file = extra; }
map both { type = sequence; maps = { virtual, extra }; }
map other { type = hash; file = other; }
smar { mailertable { file = routes; } access_map { file = missing-access; } }
smtps MTA { listen_socket { port = 2525; } flags = { access }; }`)

	set, notes, err := OpenMaps(c, "both")
	require.NoError(t, err)
	require.Equal(t, []string{"aliases: default file " + filepath.Join(dir, "aliases.db") + " does not exist; none is used"}, notes)
	require.ElementsMatch(t, []string{"both", "extra", "virtual"}, set.Names(), "not other, not the mailertable")
	set.Close()

	_, _, err = OpenMaps(c, "access_map")
	require.ErrorContains(t, err, filepath.Join(dir, "missing-access"))
	_, err = OpenSMAR(c)
	require.ErrorContains(t, err, filepath.Join(dir, "missing-access"), "smxd needs the access map it is told to use")

	s, err := OpenResolver(c)
	require.NoError(t, err)
	defer s.Close()
	require.Nil(t, s.Access)
	res := s.Resolver.Resolve(context.Background(), "u@anywhere.test")
	require.Nil(t, res.Failure)
	require.Equal(t, "esmtp:[127.0.0.1]:25", res.Destination)
}

// The greylisting section and flags reach the policy checkers: simple
// greylisting keys by client (cut by the netmask), fullgreylisting by
// client, sender and recipient, and a section without either flag does
// not greylist. The database is one, shared by the checkers.
func TestGreylistingCheckers(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "mt"), []byte("my.dom lmtp:\n. esmtp:[127.0.0.1]\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "users"), []byte("carol\ndave\n"), 0o644))
	c := load(t, dir, `queue_directory = spool;
smar { map users { type = hash; file = users; } local_user_map { name = users; }
       greylisting { grey_wait = 10m; netmask = 0xFFFFFF00; expire_limit = 5000; } }
smtps MTA { listen_socket { port = 2525; } flags = { greylisting }; }
smtps FULL { listen_socket { port = 2526; } flags = { fullgreylisting }; }
smtps MSA { listen_socket { port = 2587; } }`)
	require.True(t, NeedsGreylisting(c))
	o := GreylistOptions(c)
	require.Equal(t, filepath.Join(dir, "spool", "greylist"), o.Dir)
	require.Equal(t, 10*time.Minute, o.GreyWait)
	require.Equal(t, uint32(0xFFFFFF00), o.Netmask)
	require.Equal(t, 5000, o.ExpireLimit)
	require.Equal(t, 48*time.Hour, o.GreyExpire, "the default")

	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	o.Now = func() time.Time { return now }
	gl, err := greylist.Open(o)
	require.NoError(t, err)
	defer gl.Close()
	s, err := OpenSMAR(c)
	require.NoError(t, err)
	defer s.Close()
	checker := func(i int) *policy.Checker {
		ch, err := s.NewChecker(c, &c.SMTPS[i], gl)
		require.NoError(t, err)
		return ch
	}
	mta, full, msa := checker(0), checker(1), checker(2)
	ctx := context.Background()
	rcpt := func(ch *policy.Checker, client, sender, to string) policy.Decision {
		sess, d := ch.Connect(ctx, policy.ClientInfo{Addr: netip.MustParseAddr(client)})
		require.Equal(t, policy.Accept, d.Action)
		require.NotEqual(t, policy.Reject, ch.Mail(ctx, sess, sender).Action)
		return ch.Rcpt(ctx, sess, to)
	}

	d := rcpt(mta, "192.0.2.7", "a@b.test", "carol@my.dom")
	require.True(t, d.Greylisted)
	require.Equal(t, 421, d.Code)
	require.Equal(t, policy.Accept, rcpt(msa, "203.0.113.1", "a@b.test", "carol@my.dom").Action, "MSA has no greylisting flag")
	d = rcpt(full, "198.51.100.1", "a@b.test", "carol@my.dom")
	require.True(t, d.Greylisted)

	now = now.Add(9 * time.Minute)
	require.True(t, rcpt(mta, "192.0.2.7", "a@b.test", "carol@my.dom").Greylisted, "before grey_wait")
	now = now.Add(2 * time.Minute)
	require.Equal(t, policy.Accept, rcpt(mta, "192.0.2.99", "x@y.test", "dave@my.dom").Action, "the client's /24 is whitelisted")
	require.Equal(t, policy.Accept, rcpt(full, "198.51.100.1", "a@b.test", "carol@my.dom").Action)
	require.True(t, rcpt(full, "198.51.100.1", "a@b.test", "dave@my.dom").Greylisted, "another tuple")

	_, err = s.NewChecker(c, &c.SMTPS[0], nil)
	require.ErrorContains(t, err, "greylisting database is not open")
}
