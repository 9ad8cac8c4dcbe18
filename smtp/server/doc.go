// Package server is the SMTP server of smx, the seed's SMTPS: it accepts
// SMTP sessions on the listeners of one `smtps NAME` section, checks them
// against policy, streams message bodies into the content store (CDB) and
// answers the final dot with 250 only once the body and its TxnReceived
// event are both durable.
//
// The server meets the rest of smx at narrow interfaces defined here and
// wired by the daemon: ContentStore (CDB), EventLog (the event log, whose
// TxnReceived events the queue manager folds into IQDB), Policy (SMAR's
// access, relay and recipient checks), LoadMonitor (QMGR's feedback when
// IQDB, AQ or the disk fill up), FlushHook (ETRN), Authenticator (AUTH) and
// IDGenerator (ss_sess and ss_ta). It writes one mail log line per session,
// transaction and recipient through log/maillog.
//
// It owns the connections it accepts and nothing else: it never reads the
// configuration file, never reads the event log, never touches IQDB, AQ or
// DEFEDB, and never delivers mail.
package server
