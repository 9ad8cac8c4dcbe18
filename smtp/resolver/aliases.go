package resolver

import (
	"errors"
	"fmt"
	"strings"

	"github.com/smx-mta/smx/smtp/maps"
)

// AliasFlags are the flags of the smar aliases section (seed 002, section
// 3.9.2, item 3c).
type AliasFlags uint8

// The alias flags.
const (
	// AliasLocalPart: the map holds local parts, looked up only for
	// local addresses (flag localpart).
	AliasLocalPart AliasFlags = 1 << iota
	// AliasLocalDomains: the map holds full addresses, looked up only for
	// local addresses (flag local_domains).
	AliasLocalDomains
	// AliasAllDomains: the map holds full addresses, looked up for any
	// domain (flag all_domains).
	AliasAllDomains
	// AliasImplicitDetail: "user" and "user@domain" entries match
	// user+detail (flag implicitly_match_detail).
	AliasImplicitDetail
	// AliasReplaceMacros: ${user} and friends in right-hand sides are
	// replaced (flag replace_macros).
	AliasReplaceMacros
	// AliasPreserveDomain: an unqualified right-hand side address gets the
	// original domain instead of the local host name (flag
	// preserve_domain).
	AliasPreserveDomain
)

// LocalRHS is the right-hand side that marks a valid local address instead
// of an alias (seed 001, "Specifying Valid Local Addresses").
const LocalRHS = "local:"

// splitAliasRHS splits an alias right-hand side into addresses. Entries are
// separated by blanks; each is an RFC 5321 address in angle brackets, or a
// bare address (the seed: a single address without brackets is qualified
// by SMAR). Blanks inside quotes or angle brackets do not split.
func splitAliasRHS(rhs string) ([]string, error) {
	var out []string
	i := 0
	for i < len(rhs) {
		c := rhs[i]
		if isBlank(c) {
			i++
			continue
		}
		start := i
		depth, quoted := 0, false
		for i < len(rhs) {
			c = rhs[i]
			if quoted {
				if c == '\\' {
					i++
				} else if c == '"' {
					quoted = false
				}
				i++
				continue
			}
			if c == '"' {
				quoted = true
			} else if c == '<' {
				depth++
			} else if c == '>' {
				depth--
				if depth < 0 {
					return nil, fmt.Errorf("unbalanced '>' in %q", rhs)
				}
			} else if isBlank(c) && depth == 0 {
				break
			}
			i++
		}
		if quoted || depth != 0 {
			return nil, fmt.Errorf("unbalanced quotes or brackets in %q", rhs)
		}
		out = append(out, rhs[start:i])
	}
	if len(out) == 0 {
		return nil, errors.New("empty right-hand side")
	}
	return out, nil
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// macroValues are what ${name} expands to for one matched address.
type macroValues struct {
	user, detail, domain, tag, delimiter, subdomain, extension string
}

// replaceMacros replaces ${user}, ${detail}, ${domain}, ${tag},
// ${delimiter}, ${subdomain} and ${extension} (seed 001, "Macro
// Replacements in RHS"). An unknown macro is an error: a typo would
// otherwise send mail to a wrong address.
func replaceMacros(s string, v macroValues) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("unterminated macro in %q", s)
		}
		name := s[i+2 : i+j]
		switch name {
		case "user":
			b.WriteString(v.user)
		case "detail":
			b.WriteString(v.detail)
		case "domain":
			b.WriteString(v.domain)
		case "tag":
			b.WriteString(v.tag)
		case "delimiter":
			b.WriteString(v.delimiter)
		case "subdomain":
			b.WriteString(v.subdomain)
		case "extension":
			b.WriteString(v.extension)
		default:
			return "", fmt.Errorf("unknown macro ${%s}", name)
		}
		s = s[i+j+1:]
	}
}

func macrosFor(a maps.Address, delimiters string, key maps.Key) macroValues {
	user, delim, detail, has := maps.SplitDetail(a.Local, delimiters)
	v := macroValues{user: user, detail: detail, domain: a.Domain, subdomain: key.Subdomain}
	if has {
		v.delimiter = string(delim)
		v.extension = string(delim) + detail
	}
	return v
}
