package maillog

import (
	"errors"
	"fmt"
)

// needsEscape marks the bytes written as %XX: everything that is not
// printable ASCII (so control characters, DEL and every byte of a non-ASCII
// UTF-8 sequence), plus the comma that separates fields and the percent
// sign that starts an escape.
var needsEscape = func() (t [256]bool) {
	for i := range t {
		t[i] = i < 0x20 || i >= 0x7F
	}
	t[','] = true
	t['%'] = true
	return t
}()

const upperHex = "0123456789ABCDEF"

// AppendEscaped appends s to dst with the seed's escaping: every
// non-printable character, comma and percent sign as % and two upper-case
// hex digits. "550 5.7.1 no, not now, 99% usage" becomes
// "550 5.7.1 no%2C not now%2C 99%25 usage".
func AppendEscaped(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !needsEscape[c] {
			continue
		}
		dst = append(dst, s[start:i]...)
		dst = append(dst, '%', upperHex[c>>4], upperHex[c&0xF])
		start = i + 1
	}
	return append(dst, s[start:]...)
}

func appendEscapedBytes(dst, s []byte) []byte {
	start := 0
	for i, c := range s {
		if !needsEscape[c] {
			continue
		}
		dst = append(dst, s[start:i]...)
		dst = append(dst, '%', upperHex[c>>4], upperHex[c&0xF])
		start = i + 1
	}
	return append(dst, s[start:]...)
}

// Escape returns s escaped as by AppendEscaped.
func Escape(s string) string {
	for i := 0; i < len(s); i++ {
		if needsEscape[s[i]] {
			return string(AppendEscaped(make([]byte, 0, len(s)+8), s))
		}
	}
	return s
}

// ErrBadEscape is wrapped by Unescape's errors.
var ErrBadEscape = errors.New("maillog: bad escape")

// Unescape reverses Escape: it decodes every %XX. Log analysers use it on
// field values.
func Unescape(s string) (string, error) {
	var out []byte
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		hi, ok1 := unhex(s, i+1)
		lo, ok2 := unhex(s, i+2)
		if !ok1 || !ok2 {
			return "", fmt.Errorf("%w: want %%XX at offset %d", ErrBadEscape, i)
		}
		out = append(out, s[start:i]...)
		out = append(out, hi<<4|lo)
		start = i + 3
		i += 2
	}
	if out == nil {
		return s, nil
	}
	return string(append(out, s[start:]...)), nil
}

func unhex(s string, i int) (byte, bool) {
	if i >= len(s) {
		return 0, false
	}
	c := s[i]
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
