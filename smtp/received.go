package smtp

import (
	"net/netip"
	"strconv"
	"time"
)

// TLSFacts are the TLS details the Received: header shows.
type TLSFacts struct {
	Version string // for example "TLSv1.3"
	Cipher  string // cipher suite name
	Bits    int    // effective key length of the symmetric cipher
	Verify  string // OK, NO, NOT or FAIL as the seed names them
}

// ReceivedHeader holds what goes into the Received: header the server puts
// in front of a message.
type ReceivedHeader struct {
	HELO       string     // EHLO/HELO argument
	ClientName string     // verified client host name; "" when unknown
	ClientAddr netip.Addr // client IP address
	Host       string     // this server's host name
	Version    string     // this server's software version
	Protocol   string     // SMTP, ESMTP, ESMTPS, ESMTPA or ESMTPSA
	TLS        *TLSFacts  // nil without STARTTLS
	ID         string     // the transaction id, ss_ta
	Date       time.Time
}

// Protocol returns the "with" keyword of the Received: header (RFC 3848)
// for a session: SMTP after HELO, ESMTP after EHLO, with S for TLS and A
// for AUTH.
func Protocol(ehlo, tls, auth bool) string {
	if !ehlo {
		return "SMTP"
	}
	p := "ESMTP"
	if tls {
		p += "S"
	}
	if auth {
		p += "A"
	}
	return p
}

// Append appends the header to b in the seed's format (seed 002 10.4):
//
//	Received: from EHLO-NAME (CLIENT-NAME [CLIENT-ADDR])
//		by HOST-NAME (VERSION) with PROTOCOL
//		(TLS=TLSVERSION, cipher=CIPHERSUITE, bits=CIPHERBITS, verify=VERIFYRESULT)
//		id SS_TA; DATE
//
// The TLS line is present only with STARTTLS; CLIENT-NAME only when known.
// An IPv6 address is written "[IPv6:...]" as RFC 5321 writes it. Text the
// client chose (the EHLO name) is cleaned of anything that could break the
// header: control octets become "?", parentheses are kept balanced by
// replacing them, and it is cut at 255 octets.
func (h ReceivedHeader) Append(b []byte) []byte {
	b = append(b, "Received: from "...)
	b = appendClean(b, h.HELO, 255)
	b = append(b, " ("...)
	if h.ClientName != "" {
		b = appendClean(b, h.ClientName, 255)
		b = append(b, ' ')
	}
	b = append(b, '[')
	if h.ClientAddr.Is6() && !h.ClientAddr.Is4In6() {
		b = append(b, "IPv6:"...)
	}
	b = append(b, h.ClientAddr.Unmap().String()...)
	b = append(b, "])\r\n\tby "...)
	b = appendClean(b, h.Host, 255)
	if h.Version != "" {
		b = append(b, " ("...)
		b = appendClean(b, h.Version, 64)
		b = append(b, ')')
	}
	b = append(b, " with "...)
	b = append(b, h.Protocol...)
	b = append(b, "\r\n"...)
	if h.TLS != nil {
		b = append(b, "\t(TLS="...)
		b = appendClean(b, h.TLS.Version, 32)
		b = append(b, ", cipher="...)
		b = appendClean(b, h.TLS.Cipher, 64)
		b = append(b, ", bits="...)
		b = strconv.AppendInt(b, int64(h.TLS.Bits), 10)
		b = append(b, ", verify="...)
		b = appendClean(b, h.TLS.Verify, 8)
		b = append(b, ")\r\n"...)
	}
	b = append(b, "\tid "...)
	b = append(b, h.ID...)
	b = append(b, "; "...)
	b = h.Date.AppendFormat(b, time.RFC1123Z)
	b = append(b, "\r\n"...)
	return b
}

// appendClean appends s, at most max octets, with control octets and
// parentheses replaced so that the header stays one well-formed field.
func appendClean(b []byte, s string, max int) []byte {
	if len(s) > max {
		s = s[:max]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 32 || c == 127:
			c = '?'
		case c == '(' || c == ')' || c == '\\':
			c = '_'
		}
		b = append(b, c)
	}
	return b
}
