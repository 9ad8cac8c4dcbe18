package smtp

import (
	"errors"
	"strings"
)

// ErrBadXtext is returned by DecodeXtext for input that is not RFC 3461
// xtext.
var ErrBadXtext = errors.New("smtp: bad xtext")

// EncodeXtext encodes s as RFC 3461 xtext: "+" and "=", and every octet
// outside "!" to "~", become "+" and two upper-case hex digits.
func EncodeXtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			const hex = "0123456789ABCDEF"
			b.WriteByte('+')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// DecodeXtext decodes RFC 3461 xtext. The hex digits after "+" must be
// upper case as the RFC requires.
func DecodeXtext(s string) (string, error) {
	if strings.IndexByte(s, '+') < 0 {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < '!' || c > '~' || c == '=' {
				return "", ErrBadXtext
			}
		}
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) {
				return "", ErrBadXtext
			}
			hi, ok1 := upperHex(s[i+1])
			lo, ok2 := upperHex(s[i+2])
			if !ok1 || !ok2 {
				return "", ErrBadXtext
			}
			b.WriteByte(hi<<4 | lo)
			i += 2
		case c < '!' || c > '~' || c == '=':
			return "", ErrBadXtext
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func upperHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
