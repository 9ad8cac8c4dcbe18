package policy

// Session is the policy state of one SMTP session. Checker.Connect creates
// it; the SMTP server keeps it for the life of the connection, tells the
// Checker about STARTTLS and AUTH, and passes it to Mail and Rcpt. A Session
// is used by one goroutine at a time.
type Session struct {
	client ClientInfo

	// clientName is the verified host name of the client (forward and
	// reverse lookups agree), without the trailing dot; empty if unknown.
	clientName string
	// clientResolve is the seed's cltresolve result: ok, no, tempptr or
	// tempa; empty when the access flag is off.
	clientResolve string

	// sessionQuick is the quick:ok or quick:relay decided at connect for
	// the whole session (Continue when none).
	sessionQuick Action
	// relayAllowed is true when relaying is allowed for the whole session:
	// cltaddr:/cltname: relay, a trusted AUTH, or a verified certificate.
	relayAllowed bool
	// discardSession is true when connect returned discard.
	discardSession bool
	// delayed is a rejection decided at connect or MAIL that delay_checks
	// holds back until RCPT.
	sessionDelayed Decision
	mailDelayed    Decision

	// mailOK is true when the sender's own checks ended in ok (not cont).
	sender string
}

// ClientName returns the client's host name as verified by a reverse and a
// forward lookup (without the trailing dot), or "" when it is unknown. It is
// what the Received: header and TxnReceived.ClientName carry.
func (s *Session) ClientName() string { return s.clientName }

// ClientResolve returns the seed's cltresolve result for the client: "ok",
// "no", "tempptr", "tempa", or "" when no lookup was done.
func (s *Session) ClientResolve() string { return s.clientResolve }

// Client returns what the server said about the client at connect.
func (s *Session) Client() ClientInfo { return s.client }

// RelayAllowed reports whether relaying is allowed for the whole session,
// by the access map (cltaddr:, cltname:, certissuer:, certsubject: relay),
// relay_clients, a trusted AUTH or a verified certificate.
func (s *Session) RelayAllowed() bool { return s.relayAllowed }

// Discarded reports whether the session's mail is to be discarded (connect
// returned discard).
func (s *Session) Discarded() bool { return s.discardSession }
