package conf

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testEnv is a machine with a fixed host name and working directory.
var testEnv = Env{
	Hostname: func() (string, error) { return "mx.example.org", nil },
	Getwd:    func() (string, error) { return "/srv/work", nil },
}

func load(t *testing.T, src string) *Config {
	t.Helper()
	c, err := LoadSource("t.conf", []byte(src), "/etc/smx", testEnv)
	require.NoError(t, err)
	return c
}

func loadErr(t *testing.T, src string) string {
	t.Helper()
	_, err := LoadSource("t.conf", []byte(src), "/etc/smx", testEnv)
	require.Error(t, err)
	return err.Error()
}

const listen = "smtps { listen_socket { port = 25; } }\n"

func warnings(c *Config) []string {
	var out []string
	for _, w := range c.Warnings {
		out = append(out, w.String())
	}
	return out
}

func TestDecodeTypes(t *testing.T) {
	c := load(t, listen+`
qmgr {
    aq_MAX_entries = 0x2000;            # case-insensitive names, hex
    queue_return_timeout = 1w 2d;       # time sequence
    min_disk_space = 2048;              # unit KB
    ok_disk_space = 1GB;
    IBDB { max_commit_delay = 500; }    # unit µs
    flags = { ~reuse_connection };
    DSN_handling { flags = { header_only, no_MIME_format }; }
}
smtps MSA {
    listen_socket { type = INET; address = 127.0.0.1; port = 587; }
    max_message_size = 10240;           # KB
    io_timeout = 5m3s;
    relay_clients = { 192.0.2.0/24, loopback, 2001:db8::1, };
    flags = { not_8bitmime, dont_pipelining, !chunking, -smtputf8, VRFY, soft_bounce };
    tls { requirements_violation = ABORT; }
}
smar { greylisting { netmask = 0xFFFFFF00; } DNS { flags = use_TCP; } }
`)
	require.Equal(t, 8192, c.QMGR.AQMaxEntries)
	require.Equal(t, 9*24*time.Hour, c.QMGR.QueueReturnTimeout)
	require.Equal(t, Size(2<<20), c.QMGR.MinDiskSpace)
	require.Equal(t, Size(1<<30), c.QMGR.OKDiskSpace)
	require.Equal(t, 500*time.Microsecond, c.QMGR.IBDB.MaxCommitDelay)
	require.False(t, c.QMGR.Flags.ReuseConnection)
	require.Equal(t, DSNFlags{HeaderOnly: true, MIMEFormat: false}, c.QMGR.DSNHandling.Flags)
	require.Len(t, c.SMTPS, 2)
	msa := c.SMTPS[1]
	require.Equal(t, "MSA", msa.Name)
	require.Equal(t, 1, msa.ID)
	require.Equal(t, "inet", msa.ListenSocket.Type)
	require.Equal(t, Size(10<<20), msa.MaxMessageSize)
	require.Equal(t, 303*time.Second, msa.IOTimeout)
	require.Equal(t, []string{"192.0.2.0/24", "loopback", "2001:db8::1"}, msa.RelayClients)
	nets, err := msa.RelayNets()
	require.NoError(t, err)
	require.Len(t, nets, 4)
	require.False(t, msa.Flags.EightBitMIME)
	require.False(t, msa.Flags.Pipelining)
	require.False(t, msa.Flags.Chunking)
	require.False(t, msa.Flags.SMTPUTF8)
	require.True(t, msa.Flags.VRFY)
	require.True(t, msa.Flags.SoftBounce)
	require.True(t, msa.Flags.StartTLS, "flags not named keep their defaults")
	require.Equal(t, "abort", msa.TLS.RequirementsViolation)
	require.Equal(t, uint32(0xFFFFFF00), c.SMAR.Greylisting.Netmask)
	require.True(t, c.SMAR.DNS.Flags.UseTCP)
	require.True(t, c.SMAR.DNS.Flags.UseResolvConf)
	ls, err := msa.Listeners()
	require.NoError(t, err)
	require.Equal(t, []Listener{{"tcp", "127.0.0.1:587"}}, ls)
}

func TestDecodeAliases(t *testing.T) {
	c := load(t, listen+`
qmgr { max_errors_per_DSN = 16; }
smar { nameserver = { 10.10.10.9, 127.0.0.1 }; DNS_timeout = 6; DNS_flags = { use_TCP }; }
smtps MSA { daemon_address = { 127.0.0.1:587 }; auth { trusted_mechanisms = "CRAM-MD5 DIGEST-MD5"; } }
smtps X { daemon_address = { 127.0.0.1:588 }; auth { trusted_mechs = { PLAIN, LOGIN }; } }
`)
	require.Equal(t, 16, c.QMGR.DSNHandling.MaxErrorsPerDSN)
	require.Equal(t, []string{"10.10.10.9", "127.0.0.1"}, c.SMAR.DNS.Nameservers)
	require.Equal(t, 6*time.Second, c.SMAR.DNS.Timeout)
	require.True(t, c.SMAR.DNS.Flags.UseTCP)
	require.True(t, c.SMAR.DNS.Flags.UseResolvConf, "flags were set explicitly, use_resolvconf keeps its default")
	require.Equal(t, []string{"CRAM-MD5", "DIGEST-MD5"}, c.SMTPS[1].Auth.TrustedMechs)
	require.Equal(t, []string{"PLAIN", "LOGIN"}, c.SMTPS[2].Auth.TrustedMechs)
	p, ok := c.Pos("smar.dns.timeout")
	require.True(t, ok)
	require.Equal(t, 4, p.Line)

	c = load(t, listen+"smar { DNS { nameservers = { 127.0.0.1 }; } }")
	require.False(t, c.SMAR.DNS.Flags.UseResolvConf, "seed 002: listed nameservers turn use_resolvconf off")
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"unknown option with suggestion", "qmgr {\n  AQ_max_entires = 1;\n}",
			`t.conf:2:3: unknown option "AQ_max_entires" in section qmgr; did you mean "AQ_max_entries"?`},
		{"unknown global option", "queue_dir = /x;",
			`t.conf:1:1: unknown option "queue_dir" in the global section; did you mean "queue_directory"?`},
		{"unknown option, nothing close", "qmgr { frobnicate = 1; }",
			`t.conf:1:8: unknown option "frobnicate" in section qmgr`},
		{"unknown section", "smtpx MTA { }", `t.conf:1:1: unknown section "smtpx" in the global section; did you mean "smtps"?`},
		{"unknown subsection", "qmgr { smtpd { } }", `t.conf:1:8: unknown section "smtpd" in section qmgr; did you mean "smtpc"?`},
		{"section used as option", "qmgr = 1;", `t.conf:1:1: qmgr is a section, not an option: write qmgr { ... }`},
		{"option used as section", "hostname { }", `t.conf:1:1: hostname is an option, not a section: write hostname = value;`},
		{"wrong type number", "qmgr { AQ_max_entries = lots; }", `t.conf:1:25: AQ_max_entries: expected a number, found "lots"`},
		{"wrong unit time", "qmgr { queue_return_timeout = 5y; }",
			`t.conf:1:31: queue_return_timeout: unknown time unit "y" in "5y" (want w, d, h, m, s, ms or us)`},
		{"wrong unit size", "smtps { max_message_size = 10K; }",
			`t.conf:1:28: max_message_size: unknown size unit "K" in "10K" (want B, KB, MB or GB)`},
		{"wrong bool", "smtps { tls { cache_timeout = 1h; } } log { output = journald; }",
			`t.conf:1:54: output: expected one of stderr, syslog, file, found "journald"`},
		{"list for scalar", "hostname = { a, b };", `t.conf:1:12: hostname takes a single value, found a list of 2`},
		{"unknown flag", "smtps { flags = { 8bitmine }; }", `t.conf:1:19: unknown flag "8bitmine" in flags; did you mean "8bitmime"?`},
		{"unknown negated flag", "smtps { flags = { no_acess }; }", `t.conf:1:19: unknown flag "no_acess" in flags; did you mean "access"?`},
		{"unknown flag no suggestion", "qmgr { flags = { zzz }; }", `t.conf:1:18: unknown flag "zzz" in flags (known: reuse_connection)`},
		{"name on unnamed section", "qmgr main { }", `t.conf:1:6: section qmgr takes no name, found "main"`},
		{"map without name", "map { type = hash; }", `t.conf:1:1: section map needs a name: map NAME { ... }`},
		{"dnsbl with name", "smar { dnsbl x { } }", `t.conf:1:14: section dnsbl takes no name, found "x"`},
		{"duplicate smtps", "smtps MTA { }\nsmtps MTA { }", `t.conf:2:1: smtps MTA is declared twice (first at t.conf:1:1); give each a unique name`},
		{"too large int", "qmgr { AQ_max_entries = 99999999999; }", `t.conf:1:25: AQ_max_entries: number "99999999999" is too large (at most 2147483647)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, loadErr(t, tc.in))
		})
	}
}

func TestDecodeCollectsSeveralErrors(t *testing.T) {
	msg := loadErr(t, "qmgr { a = 1; b = 2; }\nsmtps { c = 3; }")
	require.Equal(t, 3, strings.Count(msg, "\n")+1, msg)
	require.Contains(t, msg, "t.conf:2:9: unknown option \"c\" in section smtps")
}

func TestIgnoredOptionsWarn(t *testing.T) {
	c := load(t, `
SMAR_socket = smar/smarsock;
qmgr { path = "/usr/libexec/qmgr"; wait_for_server = 4; DEFEDB { base_directory = x; } }
smtps { listen_socket { port = 25; } CDB_gid = 261; max_threads = 100; flags = { background };
        policy_milter { socket { type = inet; port = 1; } } tls { DSA_cert_file = x; } }
smtps MTA { daemon_address = { 127.0.0.1:2525 }; hostname = a; }
smtps MSA { daemon_address = { 127.0.0.1:2526 }; hostname = a; hostname = b; }
`)
	require.Equal(t, []string{
		"t.conf:2:1: warning: option SMAR_socket ignored: smxd runs SMAR inside its own process; there is no socket to it",
		"t.conf:3:8: warning: option path ignored: there is no module program to execute: smxd runs every module in one process",
		"t.conf:3:36: warning: option wait_for_server ignored: the modules start together in one process; nothing waits for another",
		"t.conf:3:57: warning: section DEFEDB ignored: DEFEDB is a projection of the event log in smx; see event_log",
		"t.conf:4:38: warning: option CDB_gid ignored: the CDB is written by smxd itself, as one user",
		"t.conf:4:53: warning: option max_threads ignored: smxd uses goroutines, not a thread pool",
		"t.conf:4:82: warning: flag background ignored: smxd does not fork; run it under a supervisor such as systemd",
		"t.conf:5:9: warning: section policy_milter ignored: smx has no policy milter interface",
		"t.conf:5:67: warning: option DSA_cert_file ignored: DSA certificates are not supported by Go's TLS; use cert_file",
		"t.conf:7:64: warning: smtps msa.hostname is set again; this value replaces the one at line 7",
	}, warnings(c))
	require.Equal(t, "b", c.SMTPS[2].Hostname)
}

func TestSeedExamples(t *testing.T) {
	files, err := filepath.Glob("testdata/seed*.conf")
	require.NoError(t, err)
	require.Len(t, files, 4)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(f)
			require.NoError(t, err)
			require.NotEmpty(t, c.Warnings, "the seed examples set MCP options, which warn")
			for _, w := range c.Warnings {
				require.Contains(t, w.String(), "ignored")
			}
			roundTrip(t, c)
		})
	}
	c, err := Load("testdata/seed001-example.conf")
	require.NoError(t, err)
	require.Equal(t, "/var/spool/smx", c.CDBBaseDirectory)
	require.Equal(t, 8192, c.QMGR.AQMaxEntries)
	require.Equal(t, 19, c.QMGR.SMTPC.InitialConnections)
	require.Equal(t, 101, c.QMGR.SMTPC.MaxConnections)
	require.Equal(t, 5, c.QMGR.SMTPS.MaxConnections)
	require.Equal(t, 160, c.QMGR.SMTPS.MaxConnectionRate)
	require.Equal(t, 303*time.Second, c.SMTPS[0].IOTimeout)
	require.Equal(t, 6*time.Minute, c.SMTPC.IOTimeout)
	require.Equal(t, 12, c.SMTPC.LogLevel)
	require.Equal(t, 12, c.SMAR.LogLevel)
	require.Equal(t, 6*time.Second, c.SMAR.DNS.Timeout)
	require.Equal(t, []string{"10.10.10.9", "127.0.0.1"}, c.SMAR.DNS.Nameservers)
	ls, err := c.SMTPS[0].Listeners()
	require.NoError(t, err)
	require.Equal(t, []Listener{{"tcp", ":25"}}, ls)

	c, err = Load("testdata/seed002-multiple-smtps.conf")
	require.NoError(t, err)
	require.Equal(t, "MSA", c.SMTPS[1].Name)
	require.Equal(t, 1, c.SMTPS[1].ID)
	require.Equal(t, "meta1-MSA", c.SMTPS[1].Log.Ident)
	require.Equal(t, "syslog", c.SMTPS[1].Log.Output, "a facility means syslog")
	require.Equal(t, "daemon", c.QMGR.Log.Facility)
	require.Equal(t, "stderr", c.SMTPC.Log.Output)
	require.True(t, c.SMTPS[1].Auth.Flags.NoPlaintext)
	require.Len(t, c.SMAR.Maps, 5)
	require.Equal(t, []string{"localusers", "otherusers"}, c.SMAR.Maps[3].Maps)
	require.Equal(t, []DNSBL{{Domain: "dnsbl.tld", Tag: "dnsbltld"}}, c.SMAR.DNSBL)
}

// TestSeedExamplesAsPrinted checks that the seed's examples, as extracted
// with their damage, fail with a message that points at the damage.
func TestSeedExamplesAsPrinted(t *testing.T) {
	src, err := os.ReadFile("testdata/seed001-example.conf")
	require.NoError(t, err)
	// Remove the closing brace of qmgr, as in the seed's text.
	broken := strings.Replace(string(src), "smx.conf\";\n}\n", "smx.conf\";\n\n", 1)
	_, err = LoadSource("seed001.conf", []byte(broken), "", testEnv)
	require.EqualError(t, err, `seed001.conf:36:1: expected "}" to close section qmgr opened at line 8`)

	broken = strings.Replace(string(src), "{10.10.10.9, 127.0.0.1}", "{,}", 1)
	_, err = LoadSource("seed001.conf", []byte(broken), "", testEnv)
	require.EqualError(t, err, `seed001.conf:31:17: expected a value or "}" in the list of nameserver, found ","`)

	src, err = os.ReadFile("testdata/seed002-example.conf")
	require.NoError(t, err)
	broken = strings.Replace(string(src), "\nqmgr {", "\ngqmgr {", 1)
	_, err = LoadSource("seed002.conf", []byte(broken), "", testEnv)
	require.EqualError(t, err, `seed002.conf:7:1: unknown section "gqmgr" in the global section; did you mean "qmgr"?`)
}

func TestResolvePaths(t *testing.T) {
	c := load(t, `
queue_directory = spool;
smtps { listen_socket { port = 25; } tls { cert_file = certs/smx.pem; key_file = /abs/key.pem; } auth { file = users; } }
smar { aliases { file = aliases; } map users { type = hash; file = users.db; } map s { type = socket; mapname = x; path = sm.sock; } }
map top { type = passwd; }
qmgr { event_log { directory = /var/lib/smx/log; } }
log { output = file; file = maillog; }
`)
	require.Equal(t, "/srv/work/spool", c.QueueDirectory)
	require.Equal(t, "/etc/smx", c.Dir)
	require.Equal(t, "/srv/work/spool/cdb", c.CDBBaseDirectory)
	require.Equal(t, "/etc/smx/certs/smx.pem", c.SMTPS[0].TLS.CertFile)
	require.Equal(t, "/abs/key.pem", c.SMTPS[0].TLS.KeyFile)
	require.Equal(t, "/etc/smx/users", c.SMTPS[0].Auth.File)
	require.Equal(t, "/etc/smx/aliases", c.SMAR.Aliases.File)
	require.Equal(t, "/etc/smx/mt", c.SMAR.Mailertable.File)
	require.Equal(t, "/etc/smx/users.db", c.SMAR.Maps[0].File)
	require.Equal(t, "/srv/work/spool/sm.sock", c.SMAR.Maps[1].Path)
	require.Equal(t, "top", c.SMAR.Maps[2].Name, "top-level maps join smar's")
	require.Empty(t, c.Maps)
	require.Equal(t, "/var/lib/smx/log", c.QMGR.EventLog.Directory)
	require.Equal(t, "/srv/work/spool/archive", c.QMGR.EventLog.ArchiveDirectory)
	require.Equal(t, "/srv/work/spool/control.sock", c.QMGR.ControlSocket)
	require.Equal(t, "/srv/work/spool/lmtpsock", c.SMTPC.LMTPSocket)
	require.Equal(t, "/srv/work/spool/maillog", c.Log.File)
	require.Equal(t, "/srv/work/spool/maillog", c.QMGR.Log.File, "modules inherit the global log")
	require.Equal(t, "file", c.SMTPS[0].Log.Output)
	require.Equal(t, "smx-smtps", c.SMTPS[0].Log.Ident)
	require.Equal(t, "mx.example.org", c.Hostname)
	require.Equal(t, "mx.example.org", c.SMTPS[0].Hostname)
	require.Equal(t, "mx.example.org", c.SMTPC.HELOName)
	require.Equal(t, "postmaster@mx.example.org", c.QMGR.DoubleBounceAddress)

	// Resolve is idempotent.
	before := *c
	require.NoError(t, c.Resolve(testEnv))
	require.Equal(t, before.QMGR, c.QMGR)
	require.Equal(t, before.SMTPS, c.SMTPS)
}

func TestLogInheritance(t *testing.T) {
	c := load(t, listen+`
log_level = 12;
log { facility = local3; options = { pid, ndelay }; }
qmgr { log_level = 4; log { ident = q; } }
smtpc { log { output = stderr; } }
`)
	require.Equal(t, "syslog", c.Log.Output)
	require.Equal(t, "local3", c.QMGR.Log.Facility)
	require.Equal(t, "syslog", c.QMGR.Log.Output)
	require.Equal(t, "q", c.QMGR.Log.Ident)
	require.Equal(t, []string{"pid", "ndelay"}, c.SMAR.Log.Options)
	require.Equal(t, 4, c.QMGR.LogLevel)
	require.Equal(t, 12, c.SMAR.LogLevel)
	require.Equal(t, 12, c.SMTPS[0].LogLevel)
	require.Equal(t, "stderr", c.SMTPC.Log.Output)
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"no listener", "smtps MTA { }", "t.conf:1:1: smtps MTA: nothing to listen on: set listen_socket { address = ...; port = ...; } or daemon_address"},
		{"bad port", "smtps { listen_socket { port = 70000; } }", "t.conf:1:1: smtps: listen_socket port 70000 out of range"},
		{"bad daemon address", "smtps { daemon_address = { nohost:25 }; }", `t.conf:1:1: smtps: daemon_address "nohost:25": "nohost" is not an IP address`},
		{"bad relay clients", listen + "smtps X { daemon_address = 127.0.0.1:26; relay_clients = { 10.0.0.0/33 }; }",
			`t.conf:2:42: smtps X.relay_clients: "10.0.0.0/33" is not a network (want 192.0.2.0/24, 2001:db8::/32, an address or loopback)`},
		{"duplicate ids", "smtps A { id = 3; daemon_address = :25; }\nsmtps B { id = 3; daemon_address = :26; }",
			"t.conf:2:11: smtps B.id: id 3 is also the id of smtps A; each SMTP server needs its own"},
		{"id range", "smtps A { id = 256; daemon_address = :25; }", "t.conf:1:11: smtps A.id: id must be between 0 and 255 (it is the process byte of the session ids), found 256"},
		{"disk space order", listen + "qmgr { min_disk_space = 10MB; ok_disk_space = 5MB; }", "t.conf:2:31: qmgr.ok_disk_space: must be larger than min_disk_space (10MB)"},
		{"AQ too small", listen + "qmgr { AQ_max_entries = 50; }", "t.conf:2:8: qmgr.AQ_max_entries: must be larger than max_recipients_per_transaction of smtps  (100), or a transaction could never fit in AQ"},
		{"SMAR timeout", listen + "qmgr { SMAR_timeout = 10s; }", "t.conf:2:8: qmgr.SMAR_timeout: must be larger than the total DNS timeout, (retries + 1) * timeout = 15s"},
		{"undeclared map", listen + "smar { mailertable { name = mt; } }", "t.conf:2:22: smar.mailertable.name: map mt is not declared (declare it with map mt { type = ...; })"},
		{"sequence of unknown", listen + "map s { type = sequence; maps = { a }; }", "t.conf:2:26: map s.maps: map a is not declared"},
		{"hash needs file", listen + "map h { type = hash; }", "t.conf:2:1: map h: map h of type hash needs file = PATH"},
		{"map needs type", listen + "smar { map h { } }", "t.conf:2:8: smar.map h: map h needs a type (hash, cdb, sequence, socket or passwd)"},
		{"duplicate map", listen + "map h { type = passwd; }\nsmar { map h { type = passwd; } }", "t.conf:3:8: smar.map h: map h is declared twice"},
		{"facility", listen + "log { facility = mial; }", `t.conf:2:7: log.facility: unknown syslog facility "mial" (want daemon, mail, auth, local0 ... local7, ...)`},
		{"log file needed", listen + "qmgr { log { output = file; } }", "t.conf:2:14: qmgr.log.output: output = file needs file = PATH"},
		{"tls pair", "smtps { listen_socket { port = 465; } tls { cert_file = c.pem; flags = { implicit }; } }", "t.conf:1:39: smtps.tls: cert_file and key_file go together"},
		{"connect_only_to", listen + "smtpc { connect_only_to = sink.example; }", `t.conf:2:9: smtpc.connect_only_to: "sink.example" is not an IP address`},
		{"metrics", listen + "metrics { listen_address = nope; }", `t.conf:2:11: metrics.listen_address: listen_address "nope": want host:port or a port`},
		{"nameservers", listen + "smar { nameserver = { 1.1.1.1, dns.example }; }", `t.conf:2:8: smar.DNS.nameservers: "dns.example" is not an IP address or IP:port`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, loadErr(t, tc.in))
		})
	}
}

func TestMetricsAddress(t *testing.T) {
	for in, want := range map[string]string{"": "", "9100": "127.0.0.1:9100", ":9100": "127.0.0.1:9100", "0.0.0.0:9100": "0.0.0.0:9100", "[::1]:9100": "[::1]:9100"} {
		c := load(t, listen+"metrics { listen_address = \""+in+"\"; }")
		got, err := c.MetricsAddress()
		require.NoError(t, err)
		require.Equal(t, want, got, in)
	}
}

func TestDefault(t *testing.T) {
	c, err := LoadSource(DefaultName, DefaultSource, "", testEnv)
	require.NoError(t, err)
	require.Empty(t, c.Warnings)
	require.Equal(t, "", c.File)
	require.Equal(t, "/srv/work/var/smx", c.QueueDirectory)
	require.Len(t, c.SMTPS, 1)
	ls, err := c.SMTPS[0].Listeners()
	require.NoError(t, err)
	require.Equal(t, []Listener{{"tcp", "127.0.0.1:2525"}}, ls)
	nets, err := c.SMTPS[0].RelayNets()
	require.NoError(t, err)
	require.Equal(t, "[127.0.0.0/8 ::1/128]", fmtPrefixes(nets))
	require.Equal(t, "mx.example.org", c.Hostname)
	require.Zero(t, c.QMGR.IBDB.MaxCommitDelay, "no pause between group commits: docs/configuration.md says why")
	roundTrip(t, c)
}

func fmtPrefixes(ps []netip.Prefix) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, p.String())
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func TestExampleConfig(t *testing.T) {
	c, err := Load("../smx.conf")
	require.NoError(t, err)
	require.Empty(t, c.Warnings)
	require.Equal(t, "/var/spool/smx", c.QueueDirectory)
	roundTrip(t, c)
}

// comparable strips what a dump does not carry.
func comparable(c *Config) Config {
	cp := *c
	cp.set, cp.Warnings, cp.File, cp.Dir = nil, nil, "", ""
	return cp
}

// roundTrip dumps c, loads the dump and checks that it is the same
// configuration, and that dumping it again gives the same text.
func roundTrip(t *testing.T, c *Config) {
	t.Helper()
	var out bytes.Buffer
	require.NoError(t, Dump(&out, c))
	again, err := LoadSource("dump.conf", out.Bytes(), "/elsewhere", testEnv)
	require.NoError(t, err, out.String())
	require.Empty(t, again.Warnings)
	want, got := comparable(c), comparable(again)
	if !reflect.DeepEqual(want, got) {
		require.Equal(t, want, got, "dump:\n%s", out.String())
	}
	var out2 bytes.Buffer
	require.NoError(t, Dump(&out2, again))
	require.Equal(t, strings.SplitN(out.String(), "\n\n", 2)[1], strings.SplitN(out2.String(), "\n\n", 2)[1])
}

func TestDumpRoundTripEverything(t *testing.T) {
	c := load(t, `
hostname = "mx.example.org"; user = smx; group = smx;
metrics { listen_address = 9100; }
log { facility = local1; ident = "smx main"; options = { pid, perror }; }
qmgr { AQ_max_entries = 100000; conf = qmgr_conf.db; DSN_handling { merge_delay_max = 90s; flags = header_only; }
       IBDB { max_commit_delay = 1500us; size = 1MB 512KB; max_open_TAs = 7; }
       event_log { archive_after = 0; snapshot_interval = 1h 1s; }
       retry_min_delay = 1m; smtpc { connection_idle_timeout = 0; flags = { lookup_rcpt_conf }; rcpt_conf_lookup_flags = { -dot }; } }
smar { address_delimiter = "+-"; aliases { name = seq; flags = { all_domains, replace_macros }; }
       map a { type = hash; file = "a b.db"; } map seq { type = sequence; maps = { a }; }
       map sock { type = socket; mapname = users; address = 127.0.0.1; port = 7777; }
       dnsbl { domain = dnsbl.example; tag = bl1; } dnsbl { domain = other.example; tag = bl2; }
       greylisting { grey_wait = 10m; netmask = 0xFFFFFF00; } local_user_map { name = a; }
       mailertable { file = "/etc/smx/mailertable"; flags = { full_address }; } DNS { retries = 0; } }
smtps MTA { listen_socket { address = 0.0.0.0; port = 25; } relay_clients = { 192.0.2.0/24 };
            flags = { access, delay_checks, greylisting, -VRFY }; max_message_size = 50MB;
            protected_recipients { allow_by = { sender, client_ip }; match_type = generic_lookup; }
            }
smtps "MSA 2" { id = 7; daemon_address = { "127.0.0.1:587", ":588", "[::1]:589", 127.0.0.2 };
                auth { file = users; flags = noplaintext; trusted_mechs = PLAIN; }
                tls { cert_file = "c.pem"; key_file = "k.pem"; CAcert_directory = cas; flags = implicit; }
                log { output = file; file = "/var/log/smx/msa.log"; } log_level = 14; }
smtpc { connect_only_to = 127.0.0.1; remote_port = 2526; LMTP_socket = /run/lmtp; flags = { read_QUIT_reply, -starttls }; }
`)
	require.Equal(t, "MSA 2", c.SMTPS[1].Name)
	roundTrip(t, c)
}

// The smtps flags and the section that seed 002 names but smx does not
// implement load with a warning that says why, never silently.
func TestUnimplementedSMTPSOptionsWarn(t *testing.T) {
	c := load(t, `smtps MTA { listen_socket { port = 25; }
  flags = { rcpt_conf, xverp, -prdr, lookup_session_conf, greylisting };
  session_features notls { flags = { -starttls }; } }
`)
	require.Equal(t, []string{
		"t.conf:2:13: warning: flag rcpt_conf ignored: smx does not look up smtps_rcpt_conf: in the access map (the seed says its syntax was to change); turn greylisting on per smtps section with the greylisting flag",
		"t.conf:2:24: warning: flag xverp ignored: smx does not offer XVERP; MAIL with XVERP gets 555 5.5.4",
		"t.conf:2:31: warning: flag prdr ignored: smx does not offer PRDR, which the seed turns on for a policy milter, and smx has no policy milter interface",
		"t.conf:2:38: warning: flag lookup_session_conf ignored: smx does not look up smtps_session_conf: in the access map; set the flags of each smtps section instead",
		"t.conf:3:3: warning: section session_features ignored: smx does not look up smtps_session_conf: in the access map, which is all that refers to session_features; set the flags of each smtps section instead",
	}, warnings(c))
	require.True(t, c.SMTPS[0].Flags.Greylisting, "the flags that are implemented still apply")
}
