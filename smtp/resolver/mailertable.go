package resolver

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/smx-mta/smx/log"
)

// Route is a parsed mailertable right-hand side.
type Route struct {
	// Mailer is log.MailerESMTP or log.MailerLMTP.
	Mailer string
	// Port is the destination port; 0 means the mailer's default.
	Port int
	// Socket is true for "lmtp:" alone: delivery over the configured
	// LMTP unix socket (SMTPC LMTP_socket).
	Socket bool
	// Hosts are the destination hosts in order.
	Hosts []RouteHost
}

// RouteHost is one host of a mailertable entry: a host name, which is
// subject to MX lookup, or an address literal.
type RouteHost struct {
	Name    string     // host name, lower case; empty for a literal
	Literal netip.Addr // the address of "[IPv4]" (or "[IPv6:...]")
}

// String renders h as the mailertable writes it: the host name, or the
// literal in brackets ("[192.0.2.1]", "[IPv6:2001:db8::1]").
func (h RouteHost) String() string {
	if h.Literal.IsValid() {
		if h.Literal.Is6() {
			return "[IPv6:" + h.Literal.String() + "]"
		}
		return "[" + h.Literal.String() + "]"
	}
	return h.Name
}

// String renders r in the mailertable's own syntax.
func (r Route) String() string {
	var b strings.Builder
	if r.Port != 0 {
		b.WriteString(strconv.Itoa(r.Port))
		b.WriteByte('^')
	}
	b.WriteString(r.Mailer)
	b.WriteByte(':')
	for i, h := range r.Hosts {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(h.String())
	}
	return b.String()
}

// ParseRoute parses a mailertable right-hand side. Two syntaxes are
// accepted (seed 001 and 002, "Mailertable"):
//
//	RHS      ::= [port "^"] ["esmtp:"] hostlist | "lmtp:" | port "^" "lmtp:" hostlist
//	hostlist ::= host [" " hostlist]
//	host     ::= "[" IPv4-address "]" | hostname
//
// and the configuration-file form in braces:
//
//	"{" ["protocol" "=" ("esmtp"|"lmtp") ";"] ["port" "=" int ";"]
//	    ("host" "=" hostname | "ipv4" "=" "{" ipv4-list "}") [";"] "}"
//
// "lmtp:" (or { protocol = lmtp; }) alone means the configured LMTP socket;
// LMTP over TCP needs a port and hosts. "[IPv6:addr]" literals are accepted
// as well, beyond the seed.
func ParseRoute(rhs string) (Route, error) {
	s := strings.TrimSpace(rhs)
	if strings.HasPrefix(s, "{") {
		return parseBraceRoute(s)
	}
	r := Route{Mailer: log.MailerESMTP}
	if i := strings.IndexByte(s, '^'); i >= 0 {
		port, err := parsePort(s[:i])
		if err != nil {
			return Route{}, err
		}
		r.Port = port
		s = s[i+1:]
	}
	switch {
	case strings.HasPrefix(strings.ToLower(s), "esmtp:"):
		s = s[len("esmtp:"):]
	case strings.HasPrefix(strings.ToLower(s), "lmtp:"):
		r.Mailer = log.MailerLMTP
		s = s[len("lmtp:"):]
	}
	hosts, err := parseHostList(strings.Fields(s))
	if err != nil {
		return Route{}, err
	}
	r.Hosts = hosts
	return r, r.check()
}

func (r *Route) check() error {
	if r.Mailer == log.MailerLMTP && len(r.Hosts) == 0 {
		if r.Port != 0 {
			return errors.New("mailertable: lmtp: with a port needs hosts")
		}
		r.Socket = true
		return nil
	}
	if len(r.Hosts) == 0 {
		return errors.New("mailertable: no hosts")
	}
	if r.Mailer == log.MailerLMTP && r.Port == 0 {
		return errors.New("mailertable: lmtp: over TCP needs a port (port^lmtp:host)")
	}
	return nil
}

func parsePort(s string) (int, error) {
	port, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || port < 1 || port > 65535 {
		return 0, fmt.Errorf("mailertable: bad port %q", s)
	}
	return port, nil
}

func parseHostList(words []string) ([]RouteHost, error) {
	var hosts []RouteHost
	for _, w := range words {
		h, err := parseHost(w)
		if err != nil {
			return nil, err
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

func parseHost(w string) (RouteHost, error) {
	if strings.HasPrefix(w, "[") {
		if !strings.HasSuffix(w, "]") {
			return RouteHost{}, fmt.Errorf("mailertable: unbalanced brackets in %q", w)
		}
		inner := w[1 : len(w)-1]
		if len(inner) > 5 && strings.EqualFold(inner[:5], "ipv6:") {
			ip, err := netip.ParseAddr(inner[5:])
			if err != nil || !ip.Is6() || ip.Zone() != "" {
				return RouteHost{}, fmt.Errorf("mailertable: bad IPv6 literal %q", w)
			}
			return RouteHost{Literal: ip}, nil
		}
		ip, err := netip.ParseAddr(inner)
		if err != nil || !ip.Is4() {
			return RouteHost{}, fmt.Errorf("mailertable: bad IPv4 literal %q", w)
		}
		return RouteHost{Literal: ip}, nil
	}
	if !validHostname(w) {
		return RouteHost{}, fmt.Errorf("mailertable: bad host name %q", w)
	}
	return RouteHost{Name: strings.ToLower(strings.TrimSuffix(w, "."))}, nil
}

func validHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// parseBraceRoute parses the "{ name = value; ... }" form.
func parseBraceRoute(s string) (Route, error) {
	toks, err := tokenize(s)
	if err != nil {
		return Route{}, err
	}
	p := &braceParser{toks: toks}
	if !p.accept("{") {
		return Route{}, errors.New("mailertable: expected '{'")
	}
	r := Route{Mailer: log.MailerESMTP}
	seen := map[string]bool{}
	for !p.accept("}") {
		name := strings.ToLower(p.next())
		if name == "" {
			return Route{}, errors.New("mailertable: missing '}'")
		}
		if seen[name] {
			return Route{}, fmt.Errorf("mailertable: %s given twice", name)
		}
		seen[name] = true
		if !p.accept("=") {
			return Route{}, fmt.Errorf("mailertable: expected '=' after %s", name)
		}
		switch name {
		case "protocol":
			switch v := strings.ToLower(p.next()); v {
			case "esmtp", "lmtp":
				r.Mailer = v
			default:
				return Route{}, fmt.Errorf("mailertable: unknown protocol %q", v)
			}
		case "port":
			port, err := parsePort(p.next())
			if err != nil {
				return Route{}, err
			}
			r.Port = port
		case "host":
			h, err := parseHost(p.next())
			if err != nil || h.Name == "" {
				return Route{}, fmt.Errorf("mailertable: host needs a host name")
			}
			r.Hosts = append(r.Hosts, h)
		case "ipv4":
			var list []string
			if p.accept("{") {
				for !p.accept("}") {
					v := p.next()
					if v == "" {
						return Route{}, errors.New("mailertable: missing '}' after ipv4 list")
					}
					if v != "," && v != ";" {
						list = append(list, v)
					}
				}
			} else {
				list = append(list, p.next())
			}
			if len(list) == 0 {
				return Route{}, errors.New("mailertable: empty ipv4 list")
			}
			for _, v := range list {
				ip, err := netip.ParseAddr(v)
				if err != nil || !ip.Is4() {
					return Route{}, fmt.Errorf("mailertable: bad IPv4 address %q", v)
				}
				r.Hosts = append(r.Hosts, RouteHost{Literal: ip})
			}
		default:
			return Route{}, fmt.Errorf("mailertable: unknown option %q", name)
		}
		p.accept(";")
	}
	if p.pos != len(p.toks) {
		return Route{}, errors.New("mailertable: text after '}'")
	}
	if seen["host"] && seen["ipv4"] {
		return Route{}, errors.New("mailertable: host and ipv4 are exclusive")
	}
	return r, r.check()
}

type braceParser struct {
	toks []string
	pos  int
}

func (p *braceParser) next() string {
	if p.pos >= len(p.toks) {
		return ""
	}
	t := p.toks[p.pos]
	p.pos++
	return t
}

func (p *braceParser) accept(t string) bool {
	if p.pos < len(p.toks) && p.toks[p.pos] == t {
		p.pos++
		return true
	}
	return false
}

func tokenize(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case strings.IndexByte("{}=;,", c) >= 0:
			toks = append(toks, string(c))
			i++
		case c == '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				return nil, errors.New("mailertable: unterminated string")
			}
			toks = append(toks, s[i+1:i+1+j])
			i += j + 2
		default:
			j := i
			for j < len(s) && strings.IndexByte("{}=;, \t\"", s[j]) < 0 {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	return toks, nil
}

// CheckMailertable parses every right-hand side of a mailertable, for
// checking a file before it is used (smxctl and reload). It returns the
// first error with its key.
func CheckMailertable(entries map[string]string) error {
	var errs []error
	for k, v := range entries {
		if _, err := ParseRoute(v); err != nil {
			errs = append(errs, fmt.Errorf("entry %q: %w", k, err))
		}
	}
	return errors.Join(errs...)
}
