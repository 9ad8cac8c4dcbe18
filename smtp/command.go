package smtp

import (
	"bytes"
	"strconv"
	"strings"
)

// Command is one command line: the verb in upper case and the argument
// after the single space that separates them.
type Command struct {
	Verb string
	Arg  string
}

// Reply codes of the command parsers.
var (
	errEmptyLine   = Errorf(500, E(5, 5, 2), "Syntax error, empty command")
	errBadCharLine = Errorf(500, E(5, 5, 2), "Syntax error, bad character in command")
	errBadVerb     = Errorf(500, E(5, 5, 2), "Syntax error, command unrecognized")
)

// ParseCommand splits a command line (without CRLF) into verb and
// argument. The verb is letters only (RFC 5321 verbs are); it is separated
// from the argument by one space. A NUL, CR, LF or other control octet
// anywhere is refused; octets above 127 are left for ParseMail and ParseRcpt
// to judge (they are valid only with SMTPUTF8).
func ParseCommand(line []byte) (Command, error) {
	if len(line) == 0 {
		return Command{}, errEmptyLine
	}
	for _, c := range line {
		if c < 32 && c != '\t' || c == 127 {
			return Command{}, errBadCharLine
		}
	}
	verb, arg, _ := bytes.Cut(line, []byte{' '})
	if len(verb) == 0 || len(verb) > 16 {
		return Command{}, errBadVerb
	}
	for _, c := range verb {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return Command{}, errBadVerb
		}
	}
	return Command{Verb: strings.ToUpper(string(verb)), Arg: string(arg)}, nil
}

// Extensions is the set of ESMTP extensions a server offers in a session;
// it decides which MAIL and RCPT parameters are accepted.
type Extensions uint16

// Extension flags.
const (
	ExtSize Extensions = 1 << iota
	Ext8BitMIME
	ExtDSN
	ExtSMTPUTF8
	ExtAuth
	ExtBinaryMIME
)

// Notify is the set of RFC 3461 NOTIFY conditions of a recipient. Its bits
// are those of log.Notify. The zero value means NOTIFY was not given.
type Notify uint8

// NOTIFY conditions.
const (
	NotifyNever Notify = 1 << iota
	NotifySuccess
	NotifyFailure
	NotifyDelay
)

// String formats n as the NOTIFY parameter value, "" for zero.
func (n Notify) String() string {
	if n&NotifyNever != 0 {
		return "NEVER"
	}
	var parts []string
	if n&NotifySuccess != 0 {
		parts = append(parts, "SUCCESS")
	}
	if n&NotifyFailure != 0 {
		parts = append(parts, "FAILURE")
	}
	if n&NotifyDelay != 0 {
		parts = append(parts, "DELAY")
	}
	return strings.Join(parts, ",")
}

// MailArgs is a parsed MAIL command.
type MailArgs struct {
	From     Mailbox // zero for the null reverse-path
	Size     int64   // SIZE=, 0 when not given
	Body     string  // BODY=: "7BIT", "8BITMIME", "BINARYMIME" or ""
	RET      string  // RET=: "FULL", "HDRS" or ""
	ENVID    string  // ENVID=, xtext-decoded
	SMTPUTF8 bool
	// Auth is the AUTH= parameter (RFC 4954), xtext-decoded; "<>" when
	// the client said the submitter is unknown; "" when not given.
	Auth string
}

// RcptArgs is a parsed RCPT command.
type RcptArgs struct {
	To     Mailbox
	Notify Notify
	// ORCPT is the RFC 3461 original recipient as "addr-type;address"
	// with the address xtext-decoded; "" when not given.
	ORCPT string
}

// ParseMail parses the argument of MAIL: "FROM:<reverse-path>" followed by
// ESMTP parameters. ext says which extensions are offered; a parameter of
// an extension not offered is refused with 555 5.5.4. Replies for errors:
// 501 5.5.2 syntax, 501 5.1.7 bad sender address, 553 5.6.7 non-ASCII
// address without SMTPUTF8, 501 5.5.4 bad parameter value.
func ParseMail(arg string, ext Extensions) (MailArgs, error) {
	const prefix = "FROM:"
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return MailArgs{}, Errorf(501, E(5, 5, 2), "Syntax error, MAIL FROM:<address> expected")
	}
	rest := arg[len(prefix):]
	if rest == "" || rest[0] != '<' {
		return MailArgs{}, Errorf(501, E(5, 5, 2), "Syntax error, angle brackets required right after FROM:")
	}
	from, rest, err := ParsePath(rest, PathOptions{AllowNull: true, UTF8: ext&ExtSMTPUTF8 != 0})
	if err != nil {
		return MailArgs{}, Errorf(501, E(5, 1, 7), "Bad sender address syntax: %s", errText(err))
	}
	var m MailArgs
	m.From = from
	params, err := splitParams(rest, ext&ExtSMTPUTF8 != 0)
	if err != nil {
		return MailArgs{}, err
	}
	seen := map[string]bool{}
	for _, p := range params {
		if seen[p.key] {
			return MailArgs{}, Errorf(501, E(5, 5, 4), "Duplicate parameter %s", p.key)
		}
		seen[p.key] = true
		switch {
		case p.key == "SIZE" && ext&ExtSize != 0:
			n, err := strconv.ParseInt(p.value, 10, 64)
			if err != nil || n < 0 || !allDigits(p.value) {
				return MailArgs{}, Errorf(501, E(5, 5, 4), "Bad SIZE value")
			}
			m.Size = n
		case p.key == "BODY" && ext&Ext8BitMIME != 0:
			switch v := strings.ToUpper(p.value); {
			case v == "7BIT" || v == "8BITMIME":
				m.Body = v
			case v == "BINARYMIME" && ext&ExtBinaryMIME != 0:
				m.Body = v
			default:
				return MailArgs{}, Errorf(501, E(5, 5, 4), "Bad BODY value")
			}
		case p.key == "RET" && ext&ExtDSN != 0:
			v := strings.ToUpper(p.value)
			if v != "FULL" && v != "HDRS" {
				return MailArgs{}, Errorf(501, E(5, 5, 4), "Bad RET value")
			}
			m.RET = v
		case p.key == "ENVID" && ext&ExtDSN != 0:
			v, err := DecodeXtext(p.value)
			if err != nil || v == "" || len(v) > 100 {
				return MailArgs{}, Errorf(501, E(5, 5, 4), "Bad ENVID value")
			}
			m.ENVID = v
		case p.key == "SMTPUTF8" && ext&ExtSMTPUTF8 != 0:
			if p.hasValue {
				return MailArgs{}, Errorf(501, E(5, 5, 4), "SMTPUTF8 takes no value")
			}
			m.SMTPUTF8 = true
		case p.key == "AUTH" && ext&ExtAuth != 0:
			if p.value == "<>" {
				m.Auth = "<>"
				break
			}
			v, err := DecodeXtext(p.value)
			if err != nil || v == "" {
				return MailArgs{}, Errorf(501, E(5, 5, 4), "Bad AUTH value")
			}
			m.Auth = v
		default:
			return MailArgs{}, Errorf(555, E(5, 5, 4), "MAIL parameter %s not recognized or not implemented", p.key)
		}
	}
	if !from.IsASCII() && !m.SMTPUTF8 {
		return MailArgs{}, Errorf(553, E(5, 6, 7), "Non-ASCII sender address requires SMTPUTF8")
	}
	return m, nil
}

// ParseRcpt parses the argument of RCPT: "TO:<forward-path>" followed by
// ESMTP parameters. utf8 says whether the transaction's MAIL carried
// SMTPUTF8. Replies for errors: 501 5.5.2 syntax, 501 5.1.3 bad recipient
// address, 553 5.6.7 non-ASCII address without SMTPUTF8, 501 5.5.4 bad
// parameter value, 555 5.5.4 unknown parameter.
func ParseRcpt(arg string, ext Extensions, utf8 bool) (RcptArgs, error) {
	const prefix = "TO:"
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return RcptArgs{}, Errorf(501, E(5, 5, 2), "Syntax error, RCPT TO:<address> expected")
	}
	rest := arg[len(prefix):]
	if rest == "" || rest[0] != '<' {
		return RcptArgs{}, Errorf(501, E(5, 5, 2), "Syntax error, angle brackets required right after TO:")
	}
	to, rest, err := ParsePath(rest, PathOptions{AllowPostmaster: true, UTF8: ext&ExtSMTPUTF8 != 0})
	if err != nil {
		return RcptArgs{}, Errorf(501, E(5, 1, 3), "Bad recipient address syntax: %s", errText(err))
	}
	if !to.IsASCII() && !utf8 {
		return RcptArgs{}, Errorf(553, E(5, 6, 7), "Non-ASCII recipient address requires SMTPUTF8")
	}
	r := RcptArgs{To: to}
	params, err := splitParams(rest, utf8)
	if err != nil {
		return RcptArgs{}, err
	}
	seen := map[string]bool{}
	for _, p := range params {
		if seen[p.key] {
			return RcptArgs{}, Errorf(501, E(5, 5, 4), "Duplicate parameter %s", p.key)
		}
		seen[p.key] = true
		switch {
		case p.key == "NOTIFY" && ext&ExtDSN != 0:
			n, ok := parseNotify(p.value)
			if !ok {
				return RcptArgs{}, Errorf(501, E(5, 5, 4), "Bad NOTIFY value")
			}
			r.Notify = n
		case p.key == "ORCPT" && ext&ExtDSN != 0:
			typ, addr, ok := strings.Cut(p.value, ";")
			if !ok || typ == "" || !isAtom(typ) {
				return RcptArgs{}, Errorf(501, E(5, 5, 4), "Bad ORCPT value")
			}
			dec, err := DecodeXtext(addr)
			if err != nil || dec == "" || len(dec) > 500 {
				return RcptArgs{}, Errorf(501, E(5, 5, 4), "Bad ORCPT value")
			}
			r.ORCPT = typ + ";" + dec
		default:
			return RcptArgs{}, Errorf(555, E(5, 5, 4), "RCPT parameter %s not recognized or not implemented", p.key)
		}
	}
	return r, nil
}

// ParseBDAT parses the argument of BDAT (RFC 3030): a chunk size and an
// optional LAST.
func ParseBDAT(arg string) (size int64, last bool, err error) {
	sz, rest, _ := strings.Cut(arg, " ")
	if !allDigits(sz) || len(sz) > 18 {
		return 0, false, Errorf(501, E(5, 5, 4), "Syntax error, BDAT chunk-size [LAST] expected")
	}
	size, _ = strconv.ParseInt(sz, 10, 64)
	switch {
	case rest == "" && !strings.Contains(arg, " "):
	case strings.EqualFold(rest, "LAST"):
		last = true
	default:
		return 0, false, Errorf(501, E(5, 5, 4), "Syntax error, BDAT chunk-size [LAST] expected")
	}
	return size, last, nil
}

func parseNotify(v string) (Notify, bool) {
	var n Notify
	for part := range strings.SplitSeq(strings.ToUpper(v), ",") {
		var bit Notify
		switch part {
		case "NEVER":
			bit = NotifyNever
		case "SUCCESS":
			bit = NotifySuccess
		case "FAILURE":
			bit = NotifyFailure
		case "DELAY":
			bit = NotifyDelay
		default:
			return 0, false
		}
		if n&bit != 0 {
			return 0, false
		}
		n |= bit
	}
	if n&NotifyNever != 0 && n != NotifyNever {
		return 0, false // NEVER must stand alone
	}
	return n, true
}

type param struct {
	key      string // upper case
	value    string
	hasValue bool
}

// splitParams splits " KEY[=VALUE] KEY[=VALUE]..." after a path. Each
// parameter is introduced by exactly one space (RFC 5321 4.1.2).
func splitParams(s string, utf8ok bool) ([]param, error) {
	if s == "" {
		return nil, nil
	}
	if s[0] != ' ' {
		return nil, Errorf(501, E(5, 5, 2), "Syntax error, space expected after address")
	}
	var out []param
	for field := range strings.SplitSeq(s[1:], " ") {
		key, value, hasValue := strings.Cut(field, "=")
		if !isKeyword(key) {
			return nil, Errorf(501, E(5, 5, 4), "Syntax error in parameters")
		}
		if hasValue && !isParamValue(value, utf8ok) {
			return nil, Errorf(501, E(5, 5, 4), "Syntax error in value of %s", strings.ToUpper(key))
		}
		out = append(out, param{key: strings.ToUpper(key), value: value, hasValue: hasValue})
	}
	return out, nil
}

// isKeyword reports whether s is an esmtp-keyword: (ALPHA / DIGIT)
// *(ALPHA / DIGIT / "-").
func isKeyword(s string) bool {
	if s == "" || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// isParamValue reports whether s is an esmtp-value: 1*(%d33-60 / %d62-126),
// plus UTF-8 under SMTPUTF8 (RFC 6531 3.3).
func isParamValue(s string, utf8ok bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 && utf8ok {
			continue
		}
		if c < 33 || c > 126 || c == '=' {
			return false
		}
	}
	return true
}

func isAtom(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isAtext(s[i]) {
			return false
		}
	}
	return s != ""
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// errText strips the package prefix from a parser error for a reply.
func errText(err error) string {
	return strings.TrimPrefix(err.Error(), "smtp: bad address: ")
}
