package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The access map tags (seed 001, "Access Map").
const (
	TagFrom          = "from:"
	TagTo            = "to:"
	TagClientAddr    = "cltaddr:"
	TagClientName    = "cltname:"
	TagClientResolve = "cltresolve:"
	TagMXBadIP       = "mxbadip:"
	TagCertIssuer    = "certissuer:"
	TagCertSubject   = "certsubject:"
	TagProtectedRcpt = "protectedrcpt:"
)

// The cltresolve: keys.
const (
	ResolveOK      = "ok"      // reverse and forward lookup match
	ResolveNo      = "no"      // they do not match
	ResolveTempPTR = "tempptr" // the reverse (PTR) lookup failed temporarily
	ResolveTempA   = "tempa"   // the forward (A) lookup failed temporarily
)

// ParseRHS parses an access map right-hand side: relay, ok, reject,
// discard, cont, or "error:XYZ A.B.C.D text", each optionally preceded by
// "quick:". The enhanced code is optional and must be of the reply code's
// class; "reject" is "error:550 5.7.0 Rejected". A rejection comes back as
// Action Reject with Code, Enhanced and Text.
func ParseRHS(rhs string) (Decision, error) {
	s := strings.TrimSpace(rhs)
	var d Decision
	if len(s) >= 6 && strings.EqualFold(s[:6], "quick:") {
		d.Quick = true
		s = strings.TrimSpace(s[6:])
	}
	word := strings.ToLower(s)
	switch {
	case word == "relay":
		d.Action = Relay
	case word == "ok":
		d.Action = Accept
	case word == "discard":
		d.Action = Discard
	case word == "cont":
		d.Action = Continue
	case word == "reject":
		d.Action, d.Code, d.Enhanced, d.Text = Reject, 550, "5.7.0", "Rejected"
	case strings.HasPrefix(word, "error:"):
		code, enh, text, err := parseReply(strings.TrimSpace(s[len("error:"):]))
		if err != nil {
			return Decision{}, err
		}
		d.Action, d.Code, d.Enhanced, d.Text = Reject, code, enh, text
	default:
		return Decision{}, fmt.Errorf("access: unknown right-hand side %q", rhs)
	}
	return d, nil
}

// parseReply parses "XYZ [A.B.C] text".
func parseReply(s string) (int, string, string, error) {
	codeText, rest, _ := strings.Cut(s, " ")
	code, err := strconv.Atoi(codeText)
	if err != nil || len(codeText) != 3 || code < 400 || code > 599 {
		return 0, "", "", fmt.Errorf("access: error: needs a 4xx or 5xx reply code, got %q", codeText)
	}
	rest = strings.TrimSpace(rest)
	enh, text, _ := strings.Cut(rest, " ")
	if isEnhanced(enh) {
		if enh[0] != codeText[0] {
			return 0, "", "", fmt.Errorf("access: enhanced code %s does not match reply code %d", enh, code)
		}
		rest = strings.TrimSpace(text)
	} else {
		enh = codeText[:1] + ".7.0"
	}
	if strings.ContainsAny(rest, "\r\n") {
		return 0, "", "", errors.New("access: line break in reply text")
	}
	return code, enh, rest, nil
}

func isEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 999 || len(p) > 3 {
			return false
		}
	}
	return true
}
