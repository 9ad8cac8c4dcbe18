// Package smtp holds the SMTP protocol primitives that the SMTP server
// (smtp/server, the seed's SMTPS) and the SMTP/LMTP client (smtp/client, the
// seed's SMTPC) share. Everything here is pure: it parses and formats bytes,
// never opens a connection, never touches a queue, a store or the log.
//
// What the package owns:
//
//   - Replies: Reply, EnhancedCode, ReadReply (a multi-line reply parser for
//     the client) and Reply.WriteTo (the server's formatter). Error carries a
//     reply through Go error returns.
//   - Commands: ParseCommand splits a command line into verb and argument;
//     ParseMail and ParseRcpt parse the MAIL and RCPT arguments strictly as
//     the seed's "Strict RFC Compliance" asks (angle brackets required, no
//     space after the colon) together with their ESMTP parameters (SIZE,
//     BODY, RET, ENVID, SMTPUTF8, AUTH; NOTIFY, ORCPT); ParseBDAT the BDAT
//     argument.
//   - Addresses: ParsePath and ParseMailbox implement the RFC 5321 path and
//     mailbox grammar, with RFC 6531 UTF-8 when SMTPUTF8 is in effect;
//     IsDomain checks an EHLO argument.
//   - xtext (RFC 3461): EncodeXtext and DecodeXtext.
//   - Input at the edge: LineReader reads CRLF-terminated lines with a length
//     limit; DataReader reads a DATA section, removing dot-stuffing and
//     refusing a bare CR or LF (the SMTP smuggling defence of sendmail 8.18);
//     ChunkReader reads one BDAT chunk with the same line checks.
//   - Output: DotWriter dot-stuffs a message for DATA and terminates it with
//     CRLF.CRLF; it never emits a bare CR or LF.
//   - Trace: ReceivedHeader builds the Received: header in the seed's format;
//     HeaderScanner inspects a message header as it streams past (hop count,
//     header size, Message-ID, whether the message starts with a header).
//
// Shared with smtp/client: Reply, EnhancedCode, ReadReply, LineReader,
// DotWriter, EncodeXtext/DecodeXtext, ParsePath/ParseMailbox and the Notify
// flags. The content store keeps a message with CRLF line ends and without
// dot-stuffing, so the client hands the stored bytes to a DotWriter as they
// are.
package smtp
