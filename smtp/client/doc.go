// Package client is the seed's SMTPC: an ESMTP and LMTP client that delivers
// one message transaction at a time over a session it opened to one of a
// recipient's next hops.
//
// It owns the wire protocol towards other mail servers: the greeting, EHLO
// (with HELO fallback) or LHLO, STARTTLS whenever a server offers it (with the
// verification result recorded, never required), PIPELINING, SIZE,
// 8BITMIME and BINARYMIME passthrough, the DSN parameters, SMTPUTF8, CHUNKING,
// per-command timeouts, the talk_to_myself loop check, and RSET for sessions
// that the caller wants to reuse.
//
// It does not decide anything about the queue: it neither retries, nor
// writes events, nor keeps idle sessions. The scheduler (QMGR) does that and
// hands the client a Route and an Envelope; the client returns what happened
// to each recipient (reply code, enhanced status code, text, stage) and the
// facts of every connection attempt (host, address, port, TLS, duration).
package client
