package conf

import "time"

// QMGR is the qmgr section: the queue manager and scheduler (seed 001/002
// "Configuration for QMGR" and "Advanced Configuration for QMGR").
type QMGR struct {
	mcpOptions
	WaitForServer                  Ignored `conf:"wait_for_server" ignore:"the modules start together in one process; nothing waits for another"`
	WaitForClient                  Ignored `conf:"wait_for_client" ignore:"the modules start together in one process; nothing waits for another"`
	ConnectionControlHashTableSize Ignored `conf:"connection_control_hash_table_size" ignore:"Go maps grow as needed"`
	Tests                          Ignored `conf:"tests" ignore:"QMGR test hooks of the C implementation"`
	DEFEDB                         Ignored `conf:"DEFEDB" ignore:"DEFEDB is a projection of the event log in smx; see event_log"`

	Log      Log `conf:"log"`
	LogLevel int `conf:"log_level"`

	// AQMaxEntries is the maximum number of recipients in AQ.
	AQMaxEntries int `conf:"AQ_max_entries"`
	// Conf is the qmgr_conf map (oci:, ocm:, icr:, icm: entries); empty
	// means none.
	Conf string `conf:"conf" path:"conf"`
	// ControlSocket is the unix socket smxctl talks to.
	ControlSocket string `conf:"control_socket" path:"queue"`
	// DSNHandling configures bounces and delay notices.
	DSNHandling DSNHandling `conf:"DSN_handling"`
	// MaxErrorsPerDSN is seed 002's spelling at the qmgr level.
	MaxErrorsPerDSN Alias `conf:"max_errors_per_DSN" alias:"DSN_handling.max_errors_per_DSN"`
	// DoubleBounceAddress receives bounces that cannot be returned; the
	// default is postmaster@hostname.
	DoubleBounceAddress string `conf:"double_bounce_address"`
	// IBDB is the group commit of the event log (the seed's IBDB).
	IBDB IBDB `conf:"IBDB"`
	// IQDB bounds the incoming queue.
	IQDB IQDB `conf:"IQDB"`
	// EventLog places and trims the event log.
	EventLog EventLog `conf:"event_log"`
	// MinDiskSpace is the free space below which mail is refused (4xx).
	MinDiskSpace Size `conf:"min_disk_space" unit:"KB"`
	// OKDiskSpace is the free space at which normal operation resumes.
	OKDiskSpace Size `conf:"ok_disk_space" unit:"KB"`
	// OCCMaxEntries is the size of the outgoing connection cache.
	OCCMaxEntries int `conf:"OCC_max_entries"`
	// QueueReturnTimeout is the longest a message stays queued before it
	// is returned (sendmail's Timeout.queuereturn, 5d).
	QueueReturnTimeout time.Duration `conf:"queue_return_timeout" unit:"s"`
	// QueueDelayTimeout is when a delay notice is sent (sendmail's
	// Timeout.queuewarn, 4h).
	QueueDelayTimeout time.Duration `conf:"queue_delay_timeout" unit:"s"`
	// RetryMinDelay and RetryMaxDelay bound the time between attempts.
	RetryMinDelay time.Duration `conf:"retry_min_delay" unit:"s"`
	RetryMaxDelay time.Duration `conf:"retry_max_delay" unit:"s"`
	// DeliveryTimeout bounds one delivery attempt.
	DeliveryTimeout time.Duration `conf:"delivery_timeout" unit:"s"`
	// SchedulerTimeout removes an item from AQ that has been there this
	// long, as a safety net.
	SchedulerTimeout time.Duration `conf:"scheduler_timeout" unit:"s"`
	// SMARTimeout bounds one resolver request.
	SMARTimeout time.Duration `conf:"SMAR_timeout" unit:"s"`
	// Flags are the qmgr flags.
	Flags QMGRFlags `conf:"flags" kind:"flags"`
	// SMTPC is the per-destination outgoing connection control.
	SMTPC QMGRSMTPC `conf:"smtpc"`
	// SMTPS is the per-client incoming connection control.
	SMTPS QMGRSMTPS `conf:"smtps"`
}

// DSNHandling is qmgr's DSN_handling section.
type DSNHandling struct {
	// MergeDelayMax is how long a DSN may wait to be merged with others.
	MergeDelayMax time.Duration `conf:"merge_delay_max" unit:"s"`
	Flags         DSNFlags      `conf:"flags" kind:"flags"`
	// MaxErrorsPerDSN is the most failed recipients listed in one bounce.
	MaxErrorsPerDSN int `conf:"max_errors_per_DSN"`
}

// DSNFlags are DSN_handling's flags.
type DSNFlags struct {
	// HeaderOnly returns only the headers in every DSN (by default the
	// first bounce of a message has it whole).
	HeaderOnly bool `conf:"header_only"`
	// MIMEFormat structures DSNs as multipart/report (RFC 3464).
	MIMEFormat bool `conf:"MIME_format"`
}

// IBDB is the group commit of the event log, which is the seed's IBDB.
type IBDB struct {
	// MaxCommitDelay is the longest a record waits for the fsync that
	// makes it durable together with others (unit: µs). The default, 0,
	// does not wait: appends that arrive while a sync is in progress share
	// the next one anyway (Pebble's commit pipeline), so a pause buys no
	// throughput and adds up to its length to every append and to the 250
	// after DATA (measured in docs/eventlog.md).
	MaxCommitDelay time.Duration `conf:"max_commit_delay" unit:"us"`
	// Size is the size at which a log segment is closed.
	Size Size `conf:"size"`
	// MaxOpenTAs is the number of records that triggers a commit at once.
	MaxOpenTAs int `conf:"max_open_TAs"`
}

// IQDB bounds the incoming queue.
type IQDB struct {
	// MaxCacheEntries is the most recipients IQDB holds before SMTP
	// servers are throttled.
	MaxCacheEntries  int     `conf:"max_cache_entries"`
	HashTableEntries Ignored `conf:"hash_table_entries" ignore:"Go maps grow as needed"`
}

// EventLog places and trims the event log (an smx extension).
type EventLog struct {
	// Directory holds the Pebble store of the log.
	Directory string `conf:"directory" path:"queue"`
	// ArchiveDirectory receives segments older than ArchiveAfter.
	ArchiveDirectory string `conf:"archive_directory" path:"queue"`
	// ArchiveAfter is the age at which events no live message refers to
	// are moved to the archive; 0 keeps everything in the live log.
	ArchiveAfter time.Duration `conf:"archive_after" unit:"s"`
	// SnapshotInterval is the time between snapshots of the projections.
	SnapshotInterval time.Duration `conf:"snapshot_interval" unit:"s"`
	// SnapshotsKept is how many snapshots are kept.
	SnapshotsKept int `conf:"snapshots_kept"`
}

// QMGRFlags are qmgr's flags.
type QMGRFlags struct {
	// ReuseConnection delivers several transactions over one SMTP
	// connection (on by default in smx; experimental in the seed).
	ReuseConnection bool `conf:"reuse_connection"`
}

// QMGRSMTPC is qmgr's smtpc section: outgoing connection control.
type QMGRSMTPC struct {
	// InitialConnections is the slow-start window per destination IP.
	InitialConnections int `conf:"initial_connections"`
	// MaxConnections is the most connections to one destination IP.
	MaxConnections int `conf:"max_connections"`
	// LMTPMaxRcptsPerTransaction and SMTPMaxRcptsPerTransaction limit the
	// recipients grouped into one delivery transaction.
	LMTPMaxRcptsPerTransaction int `conf:"lmtp_max_rcpts_per_transaction"`
	SMTPMaxRcptsPerTransaction int `conf:"smtp_max_rcpts_per_transaction"`
	// ConnectionIdleTimeout is how long an idle connection is kept for
	// reuse (smx extension).
	ConnectionIdleTimeout time.Duration  `conf:"connection_idle_timeout" unit:"s"`
	Flags                 QMGRSMTPCFlags `conf:"flags" kind:"flags"`
	// RcptConfLookupFlags select the lookups of lookup_rcpt_conf.
	RcptConfLookupFlags LookupFlags `conf:"rcpt_conf_lookup_flags" kind:"flags"`
}

// QMGRSMTPCFlags are the flags of qmgr's smtpc section.
type QMGRSMTPCFlags struct {
	// LookupRcptConf looks up smtpc_rcpt_conf: in the access map.
	LookupRcptConf bool `conf:"lookup_rcpt_conf"`
	// LookupSessionConf looks up smtpc_session_conf: in the qmgr_conf map.
	LookupSessionConf bool `conf:"lookup_session_conf"`
}

// LookupFlags select the steps of the seed's lookup order (seed 002
// "Lookup Orders in Maps").
type LookupFlags struct {
	FullAddress  bool `conf:"full_adress|full_address"`
	DetailPlus   bool `conf:"detail_plus"`
	DetailStar   bool `conf:"detail_star"`
	Star         bool `conf:"star"`
	Domain       bool `conf:"domain"`
	DotSubdomain bool `conf:"dotsubdomain"`
	Dot          bool `conf:"dot"`
}

// QMGRSMTPS is qmgr's smtps section: incoming connection control.
type QMGRSMTPS struct {
	// MaxConnectionRate is the most connections one client host may open
	// per 60 seconds.
	MaxConnectionRate int `conf:"max_connection_rate"`
	// MaxConnections is the most open connections from one client host.
	MaxConnections             int     `conf:"max_connections"`
	ConnectionControlCacheSize Ignored `conf:"connection_control_cache_size" ignore:"Go maps grow as needed"`
}

// defaultQMGR holds the qmgr defaults. docs/configuration.md says where each
// comes from.
func defaultQMGR() QMGR {
	return QMGR{
		Log:           defaultLog("smx-qmgr"),
		LogLevel:      DefaultLogLevel,
		AQMaxEntries:  8192, // the seed's example configuration
		ControlSocket: "control.sock",
		DSNHandling: DSNHandling{
			MergeDelayMax:   0,
			Flags:           DSNFlags{MIMEFormat: true}, // RFC 3464 reports
			MaxErrorsPerDSN: 100,
		},
		IBDB: IBDB{
			MaxCommitDelay: 0, // no pause: see IBDB.MaxCommitDelay
			Size:           64 << 20,
			MaxOpenTAs:     256,
		},
		IQDB: IQDB{MaxCacheEntries: 65536},
		EventLog: EventLog{
			Directory:        "eventlog",
			ArchiveDirectory: "archive",
			ArchiveAfter:     7 * day,
			SnapshotInterval: 5 * time.Minute,
			SnapshotsKept:    3,
		},
		MinDiskSpace:       100 << 20, // 102400 KB
		OKDiskSpace:        200 << 20,
		OCCMaxEntries:      4096,
		QueueReturnTimeout: 5 * day,       // seed 003: Timeout.queuereturn
		QueueDelayTimeout:  4 * time.Hour, // seed 003: Timeout.queuewarn
		RetryMinDelay:      15 * time.Minute,
		RetryMaxDelay:      4 * time.Hour,
		DeliveryTimeout:    time.Hour, // seed 003: Timeout.datafinal
		SchedulerTimeout:   2 * time.Hour,
		SMARTimeout:        2 * time.Minute,
		Flags:              QMGRFlags{ReuseConnection: true},
		SMTPC: QMGRSMTPC{
			InitialConnections:         10,  // seed 001: qmgr -c default
			MaxConnections:             100, // seed 001: qmgr -C default
			LMTPMaxRcptsPerTransaction: 100,
			SMTPMaxRcptsPerTransaction: 100, // RFC 5321 4.5.3.1.8 minimum
			ConnectionIdleTimeout:      30 * time.Second,
			RcptConfLookupFlags: LookupFlags{FullAddress: true, DetailPlus: true, DetailStar: true,
				Star: true, Domain: true, DotSubdomain: true, Dot: true}, // seed 002: all lookups
		},
		SMTPS: QMGRSMTPS{
			MaxConnectionRate: 100, // seed 001: -O R= default
			MaxConnections:    100, // seed 001: -O O= default
		},
	}
}
