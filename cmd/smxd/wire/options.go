package wire

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/smx-mta/smx/cmd/smxd/conf"
	"github.com/smx-mta/smx/content"
	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/scheduler"
	"github.com/smx-mta/smx/smtp/client"
	"github.com/smx-mta/smx/smtp/maps"
	"github.com/smx-mta/smx/smtp/server"
)

// LogOptions maps qmgr's IBDB and event_log sections onto the event log's
// Options.
func LogOptions(c *conf.Config) log.Options {
	return log.Options{
		MaxCommitDelay: c.QMGR.IBDB.MaxCommitDelay,
		MaxOpenTAs:     c.QMGR.IBDB.MaxOpenTAs,
		ArchiveDir:     c.QMGR.EventLog.ArchiveDirectory,
		ArchiveAfter:   c.QMGR.EventLog.ArchiveAfter,
		SegmentSize:    int64(c.QMGR.IBDB.Size),
		SnapshotsKept:  c.QMGR.EventLog.SnapshotsKept,
	}
}

// ContentOptions maps the disk space limits onto the CDB's Options.
func ContentOptions(c *conf.Config) content.Options {
	return content.Options{
		MinDiskSpace: int64(c.QMGR.MinDiskSpace),
		OkDiskSpace:  int64(c.QMGR.OKDiskSpace),
	}
}

// CDBDirectory is the content store's directory.
func CDBDirectory(c *conf.Config) string {
	if c.CDBBaseDirectory != "" {
		return c.CDBBaseDirectory
	}
	return filepath.Join(c.QueueDirectory, "cdb")
}

// QMGRConf is what the qmgr_conf map (qmgr { conf }) says about
// connections: oci:/ocm: per destination IP or net and octo: for the
// scheduler, icr:/icm: per client IP or net for the SMTP servers.
type QMGRConf struct {
	Outgoing []scheduler.ConnLimit
	Incoming []server.ConnOverride
	// CacheTimeout is octo: (seconds in the map), the timeout of an
	// entry in the outgoing connection cache; 0 when the map has none.
	CacheTimeout time.Duration
}

// ReadQMGRConf reads the qmgr_conf map file; an empty path gives nothing.
// Keys are TAG:IP-or-net ("oci:10.1", "icm:192.0.2.7", "ocm:" for the
// default), values numbers. Other tags are left to whoever reads them.
func ReadQMGRConf(path string) (QMGRConf, error) {
	var out QMGRConf
	if path == "" {
		return out, nil
	}
	entries, err := maps.ReadFile(path, maps.FormatPlain)
	if err != nil {
		return out, err
	}
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	outgoing := map[string]*scheduler.ConnLimit{}
	incoming := map[netip.Prefix]*server.ConnOverride{}
	for _, k := range keys {
		tag, key, ok := strings.Cut(k, ":")
		if !ok {
			continue
		}
		switch tag {
		case "oci", "ocm", "icr", "icm":
		case "octo":
			// Seed 001: the timeout of an entry in the outgoing
			// connection cache, one for all destinations.
			n, err := strconv.Atoi(strings.TrimSpace(entries[k]))
			if err != nil || n <= 0 || key != "" {
				return out, fmt.Errorf("%s: %s: expected octo: and a number of seconds, found %q", path, k, entries[k])
			}
			out.CacheTimeout = time.Duration(n) * time.Second
			continue
		default:
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(entries[k]))
		if err != nil || n < 0 {
			return out, fmt.Errorf("%s: %s: expected a number of connections, found %q", path, k, entries[k])
		}
		switch tag {
		case "oci", "ocm":
			l := outgoing[key]
			if l == nil {
				l = &scheduler.ConnLimit{Key: key}
				outgoing[key] = l
			}
			if tag == "oci" {
				l.Initial = n
			} else {
				l.Max = n
			}
		case "icr", "icm":
			p, err := prefixOfKey(key)
			if err != nil {
				return out, fmt.Errorf("%s: %s: %w", path, k, err)
			}
			o := incoming[p]
			if o == nil {
				o = &server.ConnOverride{Net: p}
				incoming[p] = o
			}
			if tag == "icr" {
				o.Rate = n
			} else {
				o.Max = n
			}
		}
	}
	for _, k := range sortedKeys(outgoing) {
		out.Outgoing = append(out.Outgoing, *outgoing[k])
	}
	for _, o := range incoming {
		out.Incoming = append(out.Incoming, *o)
	}
	sort.Slice(out.Incoming, func(i, j int) bool { return out.Incoming[i].Net.String() < out.Incoming[j].Net.String() })
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// SchedulerOptions maps the qmgr section onto the scheduler's Options.
// The daemon adds what is not configuration: the log, the feed, the
// resolver, the client, the content store, the ids and the mail log.
func SchedulerOptions(c *conf.Config, qc QMGRConf) scheduler.Options {
	q := c.QMGR
	o := scheduler.Options{
		AQMaxEntries:               q.AQMaxEntries,
		IQDBMaxEntries:             q.IQDB.MaxCacheEntries,
		QueueReturnTimeout:         q.QueueReturnTimeout,
		QueueDelayTimeout:          q.QueueDelayTimeout,
		RetryMinDelay:              q.RetryMinDelay,
		RetryMaxDelay:              q.RetryMaxDelay,
		MergeDelayMax:              q.DSNHandling.MergeDelayMax,
		MaxErrorsPerDSN:            q.DSNHandling.MaxErrorsPerDSN,
		HeaderOnly:                 q.DSNHandling.Flags.HeaderOnly,
		DoubleBounceAddress:        q.DoubleBounceAddress,
		InitialConnections:         q.SMTPC.InitialConnections,
		MaxConnections:             q.SMTPC.MaxConnections,
		ConnLimits:                 qc.Outgoing,
		SMTPMaxRcptsPerTransaction: q.SMTPC.SMTPMaxRcptsPerTransaction,
		LMTPMaxRcptsPerTransaction: q.SMTPC.LMTPMaxRcptsPerTransaction,
		NoReuseConnection:          !q.Flags.ReuseConnection,
		ConnectionCacheTimeout:     q.SMTPC.ConnectionIdleTimeout,
		OCCMaxEntries:              q.OCCMaxEntries,
		SMARTimeout:                q.SMARTimeout,
		SchedulerTimeout:           q.SchedulerTimeout,
		DeliveryTimeout:            q.DeliveryTimeout,
		MinDiskSpace:               int64(q.MinDiskSpace),
		OKDiskSpace:                int64(q.OKDiskSpace),
		Hostname:                   c.Hostname,
	}
	if qc.CacheTimeout > 0 {
		// qmgr_conf's octo: is the seed's name for the same timeout.
		o.ConnectionCacheTimeout = qc.CacheTimeout
	}
	if o.MergeDelayMax == 0 {
		// smx.conf's merge_delay_max = 0 means "do not wait"; the
		// scheduler reads a zero field as its own default and a negative
		// one as no wait.
		o.MergeDelayMax = -1
	}
	return o
}

// ClientOptions maps the smtpc section onto the SMTP/LMTP client's
// Options.
func ClientOptions(c *conf.Config) (client.Options, error) {
	s := c.SMTPC
	o := client.Options{
		HeloName:        s.HELOName,
		MyNames:         []string{c.Hostname},
		TalkToMyself:    s.Flags.TalkToMyself,
		IOTimeout:       s.IOTimeout,
		DisableSTARTTLS: !s.Flags.StartTLS,
		ConnectOnlyTo:   s.ConnectOnlyTo,
		RemotePort:      s.RemotePort,
		LMTPSocket:      s.LMTPSocket,
		ReadQUITReply:   s.Flags.ReadQUITReply,
	}
	t := s.TLS
	if t.CertFile != "" || t.CACertFile != "" || t.CACertDirectory != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if t.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
			if err != nil {
				return o, fmt.Errorf("smtpc tls: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		if t.CACertFile != "" || t.CACertDirectory != "" {
			pool := x509.NewCertPool()
			var files []string
			if t.CACertFile != "" {
				files = append(files, t.CACertFile)
			}
			if t.CACertDirectory != "" {
				entries, err := os.ReadDir(t.CACertDirectory)
				if err != nil {
					return o, fmt.Errorf("smtpc tls: CAcert_directory: %w", err)
				}
				for _, e := range entries {
					if !e.IsDir() {
						files = append(files, filepath.Join(t.CACertDirectory, e.Name()))
					}
				}
			}
			for _, f := range files {
				pem, err := os.ReadFile(f)
				if err != nil {
					return o, fmt.Errorf("smtpc tls: %w", err)
				}
				pool.AppendCertsFromPEM(pem)
			}
			cfg.RootCAs = pool
		}
		o.TLS = cfg
	}
	return o, nil
}

// ServerOptions maps one smtps section onto the SMTP server's Options.
// The daemon adds the ids, the content store, the log, the policy, the
// mail log, the load monitor, the ETRN hook and the connection limiter.
func ServerOptions(c *conf.Config, s *conf.SMTPS) (server.Options, error) {
	o := server.Options{
		Name:                               s.Name,
		Hostname:                           s.Hostname,
		EightBitMIME:                       s.Flags.EightBitMIME,
		SoftBounce:                         s.Flags.SoftBounce,
		StrictEHLOChecks:                   s.Flags.StrictEHLOChecks,
		CheckEHLO:                          s.Flags.CheckEHLO,
		RequireEHLOBeforeMAIL:              s.Flags.RequireEHLOBeforeMAIL,
		AllowDataBeforeGreeting:            s.Flags.AllowDataBeforeGreeting,
		AllowPlaintextAuth:                 !s.Auth.Flags.NoPlaintext,
		VRFY:                               s.Flags.VRFY,
		DelayGreylistingErrorUntilDATA:     s.Flags.DelayGreylistingErrorUntilDATA,
		NoSMTPUTF8:                         !s.Flags.SMTPUTF8,
		NoPipelining:                       !s.Flags.Pipelining,
		NoChunking:                         !s.Flags.Chunking,
		IOTimeout:                          s.IOTimeout,
		WaitForSMAR:                        s.WaitForSMAR,
		MaxBadCommandsPerSession:           s.MaxBadCommandsPerSession,
		MaxBadCommandsPerTransaction:       s.MaxBadCommandsPerTransaction,
		MaxInvalidAddressesPerSession:      s.MaxInvalidAddressesPerSession,
		MaxInvalidAddressesPerTransaction:  s.MaxInvalidAddressesPerTransaction,
		MaxNOOPCommandsBetweenTransactions: s.MaxNOPCommandsBetweenTransactions,
		MaxNOOPCommandsInTransaction:       s.MaxNOPCommandsInTransaction,
		MaxRecipientsPerSession:            s.MaxRecipientsPerSession,
		MaxRecipientsPerTransaction:        s.MaxRecipientsPerTransaction,
		MaxTransactions:                    s.MaxTransactions,
		MaxHops:                            s.MaxHops,
		MaxMessageSize:                     int64(s.MaxMessageSize),
		MaxLineLength:                      int(s.MaxLineLength),
		MaxCommandLineLength:               int(s.MaxLineLength),
		MaxHeaderSize:                      int64(s.MaxHeaderSize),
	}
	if s.Flags.StartTLS && s.TLS.CertFile != "" {
		cfg, err := server.LoadTLSConfig(server.TLSFiles{CertFile: s.TLS.CertFile, KeyFile: s.TLS.KeyFile,
			CACertFile: s.TLS.CACertFile, CACertDirectory: s.TLS.CACertDirectory})
		if err != nil {
			return o, fmt.Errorf("%s tls: %w", Title(s), err)
		}
		o.TLS = cfg
		o.ImplicitTLS = s.TLS.Flags.Implicit
	} else if s.TLS.Flags.Implicit {
		return o, fmt.Errorf("%s: tls flag implicit needs a certificate (tls { cert_file }) and the starttls flag", Title(s))
	}
	if s.Flags.Auth && s.Auth.File != "" {
		m, err := server.LoadCredentialMap(s.Auth.File)
		if err != nil {
			return o, fmt.Errorf("%s auth: %w", Title(s), err)
		}
		o.Auth = m
	}
	return o, nil
}

// ConnLimiterOptions maps qmgr's smtps section and the icr:/icm: entries
// onto the connection control shared by the SMTP servers.
func ConnLimiterOptions(c *conf.Config, qc QMGRConf) server.ConnLimiterOptions {
	return server.ConnLimiterOptions{
		Default:   server.ConnLimits{Rate: c.QMGR.SMTPS.MaxConnectionRate, Max: c.QMGR.SMTPS.MaxConnections},
		Overrides: qc.Incoming,
	}
}

// Title names an smtps section as smx.conf writes it ("smtps MTA").
func Title(s *conf.SMTPS) string {
	if s.Name == "" {
		return "smtps"
	}
	return "smtps " + s.Name
}
