package policy

// Session is the policy state of one SMTP session. Checker.Connect creates
// it; the SMTP server keeps it for the life of the connection, tells the
// Checker about STARTTLS and AUTH, and passes it to Mail and Rcpt. A Session
// is used by one goroutine at a time.
type Session struct {
	client ClientInfo

	// clientName is the verified host name (without the trailing dot).
	clientName    string
	clientResolve string

	// sessionQuick is Accept or Relay when a connect check ended in
	// quick:ok or quick:relay; Continue otherwise.
	sessionQuick Action
	// relayAllowed: relaying is allowed for the whole session.
	relayAllowed bool
	// sessionOK: a connect check said ok or relay (with or without
	// quick:), which exempts the session from greylisting.
	sessionOK bool
	// discardSession: connect returned discard.
	discardSession bool
	// sessionDelayed is a connect rejection held back by delay_checks.
	sessionDelayed *Decision

	// Transaction state, reset by Mail.
	sender      string
	discardTxn  bool
	mailDelayed *Decision
}

// ClientName returns the client's host name as verified by a reverse and a
// forward lookup (without the trailing dot), or "" when it is unknown. It is
// what the Received: header and TxnReceived.ClientName carry.
func (s *Session) ClientName() string { return s.clientName }

// ClientResolve returns the seed's cltresolve result for the client: "ok",
// "no", "tempptr", "tempa", or "" when no lookup was done (the access map
// is off). TxnReceived.ClientResolve carries it.
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

// TransactionDiscarded reports whether the current transaction is to be
// discarded: MAIL returned discard, a RCPT returned quick:discard, or the
// whole session is discarded. The server accepts the message and drops it.
func (s *Session) TransactionDiscarded() bool { return s.discardSession || s.discardTxn }

// Quick reports whether the connect checks ended in quick:ok or
// quick:relay, which exempts the client from the SMTP server's EHLO
// self-impersonation check (check_EHLO).
func (s *Session) Quick() bool { return s.sessionQuick == Accept || s.sessionQuick == Relay }
