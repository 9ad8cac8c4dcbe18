package conf

import "time"

// SMTPS is one smtps section: an SMTP server (seed 001/002 "Configuration
// for SMTP Server" and "Advanced Configuration for SMTP Server"). Several
// may be declared, each with its own name (e.g. MTA on 25, MSA on 587).
type SMTPS struct {
	mcpOptions
	Name          string  `conf:",name"`
	CDBGid        Ignored `conf:"CDB_gid" ignore:"the CDB is written by smxd itself, as one user"`
	ListenQueue   Ignored `conf:"listen_queue" ignore:"Go uses the system's listen backlog"`
	PolicyMilter  Ignored `conf:"policy_milter" ignore:"smx has no policy milter interface"`
	WaitForServer Ignored `conf:"wait_for_server" ignore:"the modules start together in one process; nothing waits for another"`

	Log      Log `conf:"log"`
	LogLevel int `conf:"log_level"`

	// ID is the server's unique identifier: the process byte of its
	// session and transaction ids. The default is its position among the
	// smtps sections (0, 1, ...).
	ID int `conf:"id"`
	// ListenSocket is where the server listens (the seed's MCP option,
	// which smxd binds itself).
	ListenSocket ListenSocket `conf:"listen_socket"`
	// DaemonAddress lists host:port, :port or host (port 25) addresses to
	// listen on, instead of or besides ListenSocket.
	DaemonAddress []string `conf:"daemon_address"`
	// RelayClients lists the client networks allowed to relay (IP
	// addresses, CIDR nets, or "loopback"), like Postfix's mynetworks;
	// the access map's cltaddr: entries stay supported.
	RelayClients []string `conf:"relay_clients"`
	// Hostname overrides the global hostname in the greeting and the
	// Received: header field.
	Hostname string `conf:"hostname"`

	Auth  Auth       `conf:"auth"`
	TLS   TLSServer  `conf:"tls"`
	Flags SMTPSFlags `conf:"flags" kind:"flags"`

	// IOTimeout bounds every read and write of the session.
	IOTimeout time.Duration `conf:"io_timeout" unit:"s"`
	// WaitForSMAR bounds one resolver request (access checks, recipient
	// validation).
	WaitForSMAR time.Duration `conf:"wait_for_smar" unit:"s"`

	// The limits of seed 001 "Configuration for SMTP Server"; a session
	// that exceeds one of the max_bad_*, max_nop_* or max_invalid_*
	// limits is closed with 421.
	MaxBadCommandsPerSession          int `conf:"max_bad_commands_per_session"`
	MaxBadCommandsPerTransaction      int `conf:"max_bad_commands_per_transaction"`
	MaxInvalidAddressesPerSession     int `conf:"max_invalid_addresses_per_session"`
	MaxInvalidAddressesPerTransaction int `conf:"max_invalid_addresses_per_transaction"`
	MaxNOPCommandsBetweenTransactions int `conf:"max_nop_commands_between_transactions"`
	MaxNOPCommandsInTransaction       int `conf:"max_nop_commands_in_transaction"`
	MaxRecipientsPerSession           int `conf:"max_recipients_per_session"`
	MaxRecipientsPerTransaction       int `conf:"max_recipients_per_transaction"`
	MaxTransactions                   int `conf:"max_transactions"`
	// MaxHops is the most Received: header fields; more is a mail loop.
	MaxHops int `conf:"max_hops"`
	// MaxMessageSize is the largest message accepted (unit: KB).
	MaxMessageSize Size `conf:"max_message_size" unit:"KB"`
	// MaxLineLength is the longest command or text line, CRLF included
	// (smx extension).
	MaxLineLength Size `conf:"max_line_length"`
	// MaxHeaderSize is the largest header section (smx extension).
	MaxHeaderSize Size `conf:"max_header_size"`

	// ProtectedRecipients restricts who may send to some recipients.
	ProtectedRecipients ProtectedRecipients `conf:"protected_recipients"`
	// SessionFeatures (seed 002 3.10 item 22) are classes of session
	// flags that only smtps_session_conf: access map entries refer to.
	SessionFeatures Ignored `conf:"session_features" ignore:"smx does not look up smtps_session_conf: in the access map, which is all that refers to session_features; set the flags of each smtps section instead"`
}

// ListenSocket is the seed's listen_socket section.
type ListenSocket struct {
	// Type is inet (Address and Port) or unix (Path).
	Type    string `conf:"type" enum:"inet|inet6|unix"`
	Address string `conf:"address"`
	Port    int    `conf:"port"`
	// Path is a unix socket's path (relative to the queue directory).
	Path  string `conf:"path" path:"queue"`
	Umask int    `conf:"umask" format:"octal"`
	User  string `conf:"user"`
	Group string `conf:"group"`
}

// Auth is the smtps auth section.
type Auth struct {
	// File is a map of users and password hashes (relative to the
	// configuration directory); empty turns AUTH off.
	File  string    `conf:"file" path:"conf"`
	Flags AuthFlags `conf:"flags" kind:"flags"`
	// TrustedMechs are the SASL mechanisms after which relaying is allowed
	// (a list, or one string of names separated by spaces as in seed 002).
	TrustedMechs []string `conf:"trusted_mechs" split:"space"`
	// seed 002's spelling.
	TrustedMechanisms Alias `conf:"trusted_mechanisms" alias:"trusted_mechs"`
}

// AuthFlags are the Cyrus SASL flags of seed 001.
type AuthFlags struct {
	// NoPlaintext refuses PLAIN and LOGIN unless the session is under TLS.
	NoPlaintext     bool `conf:"noplaintext"`
	NoActive        bool `conf:"noactive"`
	NoDictionary    bool `conf:"nodictionary"`
	ForwardSecrecy  bool `conf:"forward_secrecy"`
	NoAnonymous     bool `conf:"noanonymous"`
	PassCredentials bool `conf:"pass_credentials"`
	MutualAuth      bool `conf:"mutual_auth"`
}

// TLSServer is the smtps tls section.
type TLSServer struct {
	CertFile        string `conf:"cert_file" path:"conf"`
	KeyFile         string `conf:"key_file" path:"conf"`
	CACertFile      string `conf:"CAcert_file" path:"conf"`
	CACertDirectory string `conf:"CAcert_directory" path:"conf"`
	// CacheTimeout is the lifetime of TLS session tickets.
	CacheTimeout time.Duration  `conf:"cache_timeout" unit:"s"`
	Flags        TLSServerFlags `conf:"flags" kind:"flags"`
	// RequirementsViolation is what a violated tls_requirements entry
	// does: permfail, tempfail or abort.
	RequirementsViolation string  `conf:"requirements_violation" enum:"permfail|tempfail|abort"`
	DSACertFile           Ignored `conf:"DSA_cert_file" ignore:"DSA certificates are not supported by Go's TLS; use cert_file"`
	DSAKeyFile            Ignored `conf:"DSA_key_file" ignore:"DSA certificates are not supported by Go's TLS; use key_file"`
}

// TLSServerFlags are the smtps tls flags.
type TLSServerFlags struct {
	// AllowRelayingIfVerified allows relaying for clients whose
	// certificate verifies against the CA certificates.
	AllowRelayingIfVerified bool `conf:"allow_relaying_if_verified"`
	// CheckAccessMapForRelaying looks up certissuer: and certsubject:.
	CheckAccessMapForRelaying bool `conf:"check_access_map_for_relaying"`
	// Implicit starts TLS on connect (submissions on port 465) instead of
	// offering STARTTLS (smx extension).
	Implicit bool `conf:"implicit"`
}

// SMTPSFlags are the smtps flags.
type SMTPSFlags struct {
	EightBitMIME                   bool `conf:"8bitmime"`
	Access                         bool `conf:"access"`
	DelayChecks                    bool `conf:"delay_checks"`
	DelayGreylistingErrorUntilDATA bool `conf:"delay_greylisting_error_until_DATA"`
	Greylisting                    bool `conf:"greylisting"`
	FullGreylisting                bool `conf:"fullgreylisting"`
	LMTPDoesNotImplyRelaying       bool `conf:"lmtp_does_not_imply_relaying"`
	SoftBounce                     bool `conf:"soft_bounce"`
	RequireEHLOBeforeMAIL          bool `conf:"require_EHLO_before_MAIL"`
	StrictEHLOChecks               bool `conf:"strict_EHLO_checks"`
	CheckEHLO                      bool `conf:"check_EHLO"`
	AllowDataBeforeGreeting        bool `conf:"allow_data_before_greeting"`
	// StartTLS offers STARTTLS when a certificate is configured.
	StartTLS bool `conf:"starttls"`
	// Auth offers AUTH when auth.file is set.
	Auth bool `conf:"auth"`
	// VRFY answers VRFY with the resolver's verdict; off, VRFY gets 252.
	VRFY bool `conf:"VRFY"`
	// Pipelining and Chunking offer those extensions (smx extension).
	Pipelining bool `conf:"pipelining"`
	Chunking   bool `conf:"chunking"`
	// SMTPUTF8 offers RFC 6531 (smx extension).
	SMTPUTF8 bool `conf:"smtputf8"`

	Background      Ignored `conf:"background" ignore:"smxd does not fork; run it under a supervisor such as systemd"`
	SerializeAccept Ignored `conf:"serialize_accept" ignore:"Go's network poller serialises accept itself"`
	// Named by seed 002 for features smx does not offer: accepted with a
	// warning that says why, so that a seed configuration loads.
	RcptConf          Ignored `conf:"rcpt_conf" ignore:"smx does not look up smtps_rcpt_conf: in the access map (the seed says its syntax was to change); turn greylisting on per smtps section with the greylisting flag"`
	XVERP             Ignored `conf:"xverp" ignore:"smx does not offer XVERP; MAIL with XVERP gets 555 5.5.4"`
	PRDR              Ignored `conf:"prdr" ignore:"smx does not offer PRDR, which the seed turns on for a policy milter, and smx has no policy milter interface"`
	LookupSessionConf Ignored `conf:"lookup_session_conf" ignore:"smx does not look up smtps_session_conf: in the access map; set the flags of each smtps section instead"`
}

// ProtectedRecipients is the smtps protected_recipients section.
type ProtectedRecipients struct {
	// AllowBy selects the restrictions that may be used; none turns the
	// feature off.
	AllowBy AllowByFlags `conf:"allow_by" kind:"flags"`
	// MatchType is exact, generic_lookup or implicitly_match_detail.
	MatchType string `conf:"match_type" enum:"exact|generic_lookup|implicitly_match_detail"`
}

// AllowByFlags are protected_recipients' allow_by flags.
type AllowByFlags struct {
	Sender   bool `conf:"sender|allow_by_sender"`
	ClientIP bool `conf:"client_ip|allow_by_client_ip"`
}

// DefaultSMTPPort is the port of a listener that gives none.
const DefaultSMTPPort = 25

// defaultSMTPS returns the defaults of an smtps section.
func defaultSMTPS(name string, position int) SMTPS {
	ident := "smx-smtps"
	if name != "" {
		ident = "smx-" + name
	}
	return SMTPS{
		Name:          name,
		Log:           defaultLog(ident),
		LogLevel:      DefaultLogLevel,
		ID:            position,
		ListenSocket:  ListenSocket{Type: "inet", Umask: 0o007},
		DaemonAddress: []string{},
		RelayClients:  []string{},
		Auth:          Auth{TrustedMechs: []string{}},
		TLS:           TLSServer{CacheTimeout: time.Hour, RequirementsViolation: "tempfail"},
		Flags: SMTPSFlags{EightBitMIME: true, StartTLS: true, Auth: true, Pipelining: true,
			Chunking: true, SMTPUTF8: true},
		IOTimeout:                         5 * time.Minute, // seed 003: Timeout.command minimum
		WaitForSMAR:                       time.Minute,
		MaxBadCommandsPerSession:          20,
		MaxBadCommandsPerTransaction:      10,
		MaxInvalidAddressesPerSession:     50,
		MaxInvalidAddressesPerTransaction: 20,
		MaxNOPCommandsBetweenTransactions: 20,
		MaxNOPCommandsInTransaction:       10,
		MaxRecipientsPerSession:           1000,
		MaxRecipientsPerTransaction:       100, // RFC 5321 4.5.3.1.8 minimum
		MaxTransactions:                   100,
		MaxHops:                           25, // seed 003: MaxHopCount
		MaxMessageSize:                    25 << 20,
		MaxLineLength:                     4096,
		MaxHeaderSize:                     100 << 10,
		ProtectedRecipients:               ProtectedRecipients{MatchType: "exact"},
	}
}
