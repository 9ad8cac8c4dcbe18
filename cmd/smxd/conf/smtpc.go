package conf

import "time"

// SMTPC is the smtpc section: the SMTP and LMTP client (seed 001/002
// "Configuration for SMTP Client" and "Advanced Configuration for SMTP
// Client").
type SMTPC struct {
	mcpOptions
	WaitForServer Ignored `conf:"wait_for_server" ignore:"the modules start together in one process; nothing waits for another"`

	Log      Log `conf:"log"`
	LogLevel int `conf:"log_level"`

	// IOTimeout bounds every read and write of a delivery session.
	IOTimeout time.Duration `conf:"io_timeout" unit:"s"`
	// LMTPSocket is the unix socket of "lmtp:" mailertable entries
	// (relative to the queue directory).
	LMTPSocket string `conf:"LMTP_socket" path:"queue"`
	// ConnectOnlyTo sends every SMTP delivery to this IP address instead
	// of the resolved hosts (for tests with real addresses).
	ConnectOnlyTo string `conf:"connect_only_to"`
	// RemotePort is the port SMTP deliveries connect to.
	RemotePort int `conf:"remote_port"`
	// HELOName overrides the global hostname in EHLO (smx extension).
	HELOName string     `conf:"helo_name"`
	TLS      TLSClient  `conf:"tls"`
	Flags    SMTPCFlags `conf:"flags" kind:"flags"`
}

// TLSClient is the smtpc tls section.
type TLSClient struct {
	CertFile        string  `conf:"cert_file" path:"conf"`
	KeyFile         string  `conf:"key_file" path:"conf"`
	CACertFile      string  `conf:"CAcert_file" path:"conf"`
	CACertDirectory string  `conf:"CAcert_directory" path:"conf"`
	DSACertFile     Ignored `conf:"DSA_cert_file" ignore:"DSA certificates are not supported by Go's TLS; use cert_file"`
	DSAKeyFile      Ignored `conf:"DSA_key_file" ignore:"DSA certificates are not supported by Go's TLS; use key_file"`
}

// SMTPCFlags are the smtpc flags of seed 002.
type SMTPCFlags struct {
	// ReadQUITReply waits for the reply to QUIT before closing.
	ReadQUITReply bool `conf:"read_QUIT_reply"`
	// SeparateFinalDotAndQUIT sends the final dot and QUIT in separate
	// packets even with PIPELINING.
	SeparateFinalDotAndQUIT bool `conf:"separate_final_dot_and_QUIT"`
	// TalkToMyself allows a server that greets with our own host name.
	TalkToMyself bool `conf:"talk_to_myself"`
	// StartTLS uses STARTTLS when the server offers it (on by default, as
	// the seed always does).
	StartTLS bool `conf:"starttls"`
}

func defaultSMTPC() SMTPC {
	return SMTPC{
		Log:        defaultLog("smx-smtpc"),
		LogLevel:   DefaultLogLevel,
		IOTimeout:  5 * time.Minute, // seed 003: Timeout.mail/rcpt minimum
		LMTPSocket: "lmtpsock",      // seed 001
		RemotePort: 25,
		Flags:      SMTPCFlags{StartTLS: true},
	}
}
