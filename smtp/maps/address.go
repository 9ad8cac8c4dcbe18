package maps

import (
	"errors"
	"fmt"
	"strings"
)

// Address is an RFC 5321 address split into local part and domain. The
// zero Address is the null reverse path <>.
type Address struct {
	// Local is the local part with any quoting removed.
	Local string
	// Domain is the domain, or an address literal with its brackets
	// ("[192.0.2.1]"); empty for an unqualified address.
	Domain string
}

// Limits of RFC 5321 section 4.5.3.1 that the splitter enforces; they keep
// keys built from untrusted input bounded.
const (
	maxLocalPart = 64
	maxDomain    = 255
	maxPath      = 256
)

// IsNull reports whether a is the null reverse path <>.
func (a Address) IsNull() bool { return a.Local == "" && a.Domain == "" }

// String renders a as local@domain (without angle brackets), quoting the
// local part when it is not a dot-string.
func (a Address) String() string {
	if a.IsNull() {
		return ""
	}
	local := a.Local
	if !isDotString(local) {
		local = quoteLocal(local)
	}
	if a.Domain == "" {
		return local
	}
	return local + "@" + a.Domain
}

// ParseAddress splits an RFC 5321 mailbox. Angle brackets are optional; a
// source route ("@a,@b:user@dom") is accepted and dropped (RFC 5321, section
// 3.3 and appendix C); "<>" and "" give the null address. The local part is
// a dot-string or a quoted string; the domain is a host name or an address
// literal in brackets. An address without "@" is returned with an empty
// Domain: callers that need a qualified address check for that.
func ParseAddress(s string) (Address, error) {
	if len(s) > maxPath+2 {
		return Address{}, fmt.Errorf("address: longer than %d characters", maxPath)
	}
	if strings.HasPrefix(s, "<") {
		if !strings.HasSuffix(s, ">") || len(s) < 2 {
			return Address{}, errors.New("address: unbalanced angle brackets")
		}
		s = s[1 : len(s)-1]
	} else if strings.HasSuffix(s, ">") {
		return Address{}, errors.New("address: unbalanced angle brackets")
	}
	if s == "" {
		return Address{}, nil
	}
	if s[0] == '@' {
		// A source route: everything up to the first ':' is dropped.
		i := strings.IndexByte(s, ':')
		if i < 0 {
			return Address{}, errors.New("address: source route without ':'")
		}
		for _, hop := range strings.Split(s[:i], ",") {
			if len(hop) < 2 || hop[0] != '@' || checkDomain(hop[1:]) != nil {
				return Address{}, fmt.Errorf("address: bad source route %q", s[:i])
			}
		}
		s = s[i+1:]
	}
	var a Address
	var rest string
	if s != "" && s[0] == '"' {
		local, n, err := unquoteLocal(s)
		if err != nil {
			return Address{}, err
		}
		a.Local, rest = local, s[n:]
		if rest != "" && rest[0] != '@' {
			return Address{}, errors.New("address: text after quoted local part")
		}
	} else {
		i := strings.IndexByte(s, '@')
		if i < 0 {
			i = len(s)
		}
		a.Local, rest = s[:i], s[i:]
		if !isDotString(a.Local) {
			return Address{}, fmt.Errorf("address: bad local part %q", a.Local)
		}
	}
	if len(a.Local) > maxLocalPart {
		return Address{}, fmt.Errorf("address: local part longer than %d characters", maxLocalPart)
	}
	if rest != "" {
		a.Domain = rest[1:]
		if err := checkDomain(a.Domain); err != nil {
			return Address{}, err
		}
	}
	if a.Local == "" {
		return Address{}, errors.New("address: empty local part")
	}
	return a, nil
}

// isAtext reports whether c is an RFC 5322 atext character.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c >= 0x80:
		// RFC 6531: UTF-8 in the local part with SMTPUTF8.
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			if s[i-1] == '.' {
				return false
			}
			continue
		}
		if !isAtext(c) {
			return false
		}
	}
	return true
}

// unquoteLocal reads a quoted string at the start of s and returns its
// content and the number of bytes read.
func unquoteLocal(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return b.String(), i + 1, nil
		case c == '\\':
			i++
			if i >= len(s) || s[i] < 32 || s[i] == 127 {
				return "", 0, errors.New("address: bad quoted pair")
			}
			b.WriteByte(s[i])
		case c < 32 || c == 127:
			return "", 0, errors.New("address: control character in quoted local part")
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, errors.New("address: unterminated quoted local part")
}

func quoteLocal(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// checkDomain accepts a host name (letters, digits, hyphens, underscores
// and UTF-8 in dot-separated labels) or an address literal in brackets.
func checkDomain(d string) error {
	if d == "" {
		return errors.New("address: empty domain")
	}
	if len(d) > maxDomain {
		return fmt.Errorf("address: domain longer than %d characters", maxDomain)
	}
	if d[0] == '[' {
		if d[len(d)-1] != ']' || len(d) < 3 {
			return fmt.Errorf("address: bad address literal %q", d)
		}
		for i := 1; i < len(d)-1; i++ {
			c := d[i]
			if c <= 32 || c >= 127 || c == '[' || c == ']' || c == '\\' {
				return fmt.Errorf("address: bad address literal %q", d)
			}
		}
		return nil
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("address: bad domain %q", d)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
				c == '-' || c == '_' || c >= 0x80
			if !ok {
				return fmt.Errorf("address: bad domain %q", d)
			}
		}
	}
	return nil
}
