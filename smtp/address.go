package smtp

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// RFC 5321 4.5.3.1 size limits.
const (
	MaxLocalPartLength = 64
	MaxDomainLength    = 255
	MaxPathLength      = 256 // including the angle brackets
	maxLabelLength     = 63
)

// Mailbox is an RFC 5321 mailbox: a local part and a domain. The local part
// is kept as the client wrote it (a quoted string keeps its quotes); the
// domain is a domain name or an address literal in brackets such as
// "[192.0.2.1]". The zero Mailbox is the null reverse-path "<>". A Mailbox
// with an empty Domain is the special recipient "<Postmaster>".
type Mailbox struct {
	Local  string
	Domain string
}

// IsNull reports whether m is the null reverse-path.
func (m Mailbox) IsNull() bool { return m.Local == "" && m.Domain == "" }

// String returns "local@domain", "Postmaster" for the domain-less
// postmaster, and "" for the null path.
func (m Mailbox) String() string {
	if m.Domain == "" {
		return m.Local
	}
	return m.Local + "@" + m.Domain
}

// IsASCII reports whether m is all ASCII, i.e. usable without SMTPUTF8.
func (m Mailbox) IsASCII() bool { return isASCII(m.Local) && isASCII(m.Domain) }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// PathOptions says which forms ParsePath accepts besides a plain mailbox.
type PathOptions struct {
	AllowNull       bool // "<>" (a reverse-path)
	AllowPostmaster bool // "<Postmaster>" without a domain (a forward-path)
	UTF8            bool // RFC 6531 UTF-8 in local part and domain
}

// ErrBadPath is wrapped by the errors of ParsePath and ParseMailbox.
var ErrBadPath = errors.New("smtp: bad address")

func pathErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadPath}, args...)...)
}

// ParsePath parses an RFC 5321 Path at the start of s: "<" [A-d-l ":"]
// Mailbox ">". A source route (A-d-l) is accepted and dropped, as RFC 5321
// 4.1.1.3 says a server should. It returns the mailbox and the rest of s
// after ">".
func ParsePath(s string, opts PathOptions) (Mailbox, string, error) {
	if len(s) == 0 || s[0] != '<' {
		return Mailbox{}, s, pathErrorf("path must start with <")
	}
	end := pathEnd(s)
	if end < 0 {
		return Mailbox{}, s, pathErrorf("path has no closing >")
	}
	if end+1 > MaxPathLength {
		return Mailbox{}, s, pathErrorf("path longer than %d octets", MaxPathLength)
	}
	inner, rest := s[1:end], s[end+1:]
	if inner == "" {
		if !opts.AllowNull {
			return Mailbox{}, rest, pathErrorf("null path not allowed here")
		}
		return Mailbox{}, rest, nil
	}
	if inner[0] == '@' {
		colon := strings.IndexByte(inner, ':')
		if colon < 0 {
			return Mailbox{}, rest, pathErrorf("source route without ':'")
		}
		for _, hop := range strings.Split(inner[:colon], ",") {
			if len(hop) < 2 || hop[0] != '@' || !isDomain(hop[1:], opts.UTF8) {
				return Mailbox{}, rest, pathErrorf("bad source route %q", inner[:colon])
			}
		}
		inner = inner[colon+1:]
	}
	if opts.AllowPostmaster && strings.EqualFold(inner, "postmaster") {
		return Mailbox{Local: inner}, rest, nil
	}
	m, err := ParseMailbox(inner, opts.UTF8)
	return m, rest, err
}

// pathEnd returns the index of the '>' that closes the path starting at
// s[0], skipping quoted strings in the local part, or -1.
func pathEnd(s string) int {
	inQuote := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '>':
			return i
		}
	}
	return -1
}

// ParseMailbox parses "local@domain" (RFC 5321 Mailbox) in s as a whole.
// With utf8, RFC 6531 UTF-8 is allowed in both parts.
func ParseMailbox(s string, utf8ok bool) (Mailbox, error) {
	if !utf8ok && !isASCII(s) {
		return Mailbox{}, pathErrorf("non-ASCII address without SMTPUTF8")
	}
	if !utf8.ValidString(s) {
		return Mailbox{}, pathErrorf("address is not valid UTF-8")
	}
	at := localPartEnd(s, utf8ok)
	if at < 0 {
		return Mailbox{}, pathErrorf("bad local part in %q", s)
	}
	if at == len(s) || s[at] != '@' {
		return Mailbox{}, pathErrorf("no @domain in %q", s)
	}
	local, domain := s[:at], s[at+1:]
	if len(local) > MaxLocalPartLength {
		return Mailbox{}, pathErrorf("local part longer than %d octets", MaxLocalPartLength)
	}
	if strings.HasPrefix(domain, "[") {
		if !isAddressLiteral(domain) {
			return Mailbox{}, pathErrorf("bad address literal %q", domain)
		}
	} else if !isDomain(domain, utf8ok) {
		return Mailbox{}, pathErrorf("bad domain %q", domain)
	}
	return Mailbox{Local: local, Domain: domain}, nil
}

// localPartEnd returns the length of the Dot-string or Quoted-string at the
// start of s, or -1 if there is none.
func localPartEnd(s string, utf8ok bool) int {
	if s == "" {
		return -1
	}
	if s[0] == '"' {
		for i := 1; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '"':
				if i == 1 {
					// RFC 5321 allows "" but an empty local part cannot
					// be delivered or replied to: refuse it.
					return -1
				}
				return i + 1
			case c == '\\':
				i++
				if i >= len(s) || s[i] < 32 || s[i] > 126 {
					return -1
				}
			case c >= 32 && c <= 126:
			case c >= 0x80 && utf8ok:
			default:
				return -1
			}
		}
		return -1
	}
	i := 0
	for {
		start := i
		for i < len(s) && (isAtext(s[i]) || (utf8ok && s[i] >= 0x80)) {
			i++
		}
		if i == start {
			return -1 // empty atom: leading, trailing or double dot
		}
		if i < len(s) && s[i] == '.' {
			i++
			continue
		}
		return i
	}
}

// isAtext reports whether c is RFC 5322 atext.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// IsDomain reports whether s is an RFC 5321 Domain: dot-separated labels of
// letters, digits and inner hyphens. With utf8, non-ASCII characters count
// as letters (RFC 6531 U-labels).
func IsDomain(s string, utf8ok bool) bool { return isDomain(s, utf8ok) }

func isDomain(s string, utf8ok bool) bool {
	if s == "" || len(s) > MaxDomainLength {
		return false
	}
	if utf8ok && !utf8.ValidString(s) {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > maxLabelLength {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			case c >= 0x80 && utf8ok:
			case c == '-' && i > 0 && i < len(label)-1:
			default:
				return false
			}
		}
	}
	return true
}

// IsAddressLiteral reports whether s is an RFC 5321 address-literal:
// "[IPv4]", "[IPv6:addr]" or "[tag:content]".
func IsAddressLiteral(s string) bool { return isAddressLiteral(s) }

func isAddressLiteral(s string) bool {
	if len(s) < 3 || s[0] != '[' || s[len(s)-1] != ']' {
		return false
	}
	inner := s[1 : len(s)-1]
	tag, rest, found := strings.Cut(inner, ":")
	if !found {
		a, err := netip.ParseAddr(inner)
		return err == nil && a.Is4()
	}
	if strings.EqualFold(tag, "IPv6") {
		a, err := netip.ParseAddr(rest)
		return err == nil && a.Is6() && a.Zone() == ""
	}
	// General-address-literal: Standardized-tag ":" 1*dcontent.
	if !isDomain(tag, false) || strings.Contains(tag, ".") || rest == "" {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; c < 33 || c > 126 || c == '[' || c == '\\' || c == ']' {
			return false
		}
	}
	return true
}
