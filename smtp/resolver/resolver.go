// Package resolver is SMAR's address resolver: for each recipient it says
// where mail goes (mailertable, then DNS MX), expands aliases (with their
// flags, macros, nesting limit, loop detection, owner-LIST and duplicate
// removal), and validates local addresses (aliases "local:" entries and
// local_user_map). Its Result maps onto a log.RcptResolved event.
//
// It reads maps (package maps) and asks DNS (package dnsclient); it never
// appends events, never talks SMTP, and keeps no state between calls. The
// server calls it for validation, the scheduler for routing.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/smtp/maps"
	"github.com/smx-mta/smx/smtp/resolver/dnsclient"
)

// Router finds the destination hosts of a domain; *dnsclient.Client is one.
type Router interface {
	Route(ctx context.Context, domain string) ([]dnsclient.Host, error)
}

// Options configure a Resolver. Zero fields take the documented defaults.
type Options struct {
	// Mailertable is the smar mailertable (option mailertable { file }
	// or { name }). Required by the seed; nil means an empty one, where
	// every domain is routed by DNS.
	Mailertable maps.Map
	// MailertableFlags select the mailertable lookup steps (mailertable
	// { flags }). Zero means maps.MailertableDefault (domain,
	// dotsubdomain, dot).
	MailertableFlags maps.Flags
	// Aliases is the aliases map (aliases { file } or { name }); nil
	// means no aliases.
	Aliases maps.Map
	// AliasFlags are aliases { flags }. Zero means AliasLocalPart.
	AliasFlags AliasFlags
	// LocalUsers is local_user_map { name }: valid local parts. Nil
	// means none.
	LocalUsers maps.Map
	// LocalUserImplicitDetail is local_user_map { flags =
	// implicitly_match_detail }.
	LocalUserImplicitDetail bool
	// AddressDelimiters is address_delimiter: every character of it is a
	// delimiter. Default "+".
	AddressDelimiters string
	// Hostname is the local host name appended to unqualified addresses.
	// Default "localhost".
	Hostname string
	// LMTPSocket is the SMTPC LMTP_socket that "lmtp:" alone means.
	// Default "lmtpsock".
	LMTPSocket string
	// MaxAliasDepth is how deep aliases nest before the expansion fails.
	// Default 5 (seed: "currently up to 5 levels").
	MaxAliasDepth int
	// MaxExpansion caps the recipients one alias expansion yields.
	// Default 10000.
	MaxExpansion int
	// DNS routes domains that the mailertable does not. Required unless
	// every domain is in the mailertable.
	DNS Router
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

// Resolver answers routing and validation questions. It is safe for
// concurrent use.
type Resolver struct {
	opts Options
	log  *slog.Logger
}

// New returns a Resolver.
func New(opts Options) *Resolver {
	if opts.MailertableFlags == 0 {
		opts.MailertableFlags = maps.MailertableDefault
	}
	if opts.AliasFlags&(AliasLocalPart|AliasLocalDomains|AliasAllDomains) == 0 {
		opts.AliasFlags |= AliasLocalPart
	}
	if opts.AddressDelimiters == "" {
		opts.AddressDelimiters = maps.DefaultDelimiters
	}
	if opts.Hostname == "" {
		opts.Hostname = "localhost"
	}
	if opts.LMTPSocket == "" {
		opts.LMTPSocket = "lmtpsock"
	}
	if opts.MaxAliasDepth <= 0 {
		opts.MaxAliasDepth = 5
	}
	if opts.MaxExpansion <= 0 {
		opts.MaxExpansion = 10000
	}
	l := opts.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &Resolver{opts: opts, log: l}
}

// Failure is a recipient that cannot be resolved, with the SMTP reply the
// seed gives for it.
type Failure struct {
	Code     int    // 4xx or 5xx
	Enhanced string // for example "5.1.1"
	Text     string
}

// Temporary reports whether the failure may go away (a 4xx code).
func (f *Failure) Temporary() bool { return f.Code/100 == 4 }

// Error renders the reply, for example "550 5.1.1 User unknown".
func (f *Failure) Error() string { return fmt.Sprintf("%d %s %s", f.Code, f.Enhanced, f.Text) }

// RcptFailed returns the event recording f as a permanent failure of the
// resolve stage.
func (f *Failure) RcptFailed() *log.RcptFailed {
	return &log.RcptFailed{Stage: "resolve", Code: f.Code, Enhanced: f.Enhanced, Reason: f.Text}
}

// Hop is one destination host with its addresses in the order to try.
type Hop struct {
	Host       string // host name, or the address of a literal
	Preference int    // MX preference; 0 for mailertable literals and implicit MX
	Addrs      []netip.Addr
}

// Result is the resolver's answer for one recipient: exactly one of a
// delivery (Mailer set), an expansion (Expansion set) or a Failure.
type Result struct {
	// Address is the recipient as resolved: qualified, without brackets.
	Address string
	// Local is true when the domain is local (its mailertable entry uses
	// lmtp:).
	Local bool

	// Mailer is log.MailerESMTP or log.MailerLMTP for a delivery.
	Mailer string
	// Port is the destination port; 0 means the mailer's default.
	Port int
	// Socket is the LMTP unix socket when the mailertable said "lmtp:"
	// alone.
	Socket string
	// Hops are the destination hosts in the order to try.
	Hops []Hop
	// Destination is the key the scheduler groups and throttles by:
	// "lmtp:SOCKET", or MAILER:NEXTHOP:PORT where NEXTHOP is the
	// mailertable's host list (hosts joined by ",") or, when DNS routes,
	// the recipient's domain.
	Destination string
	// Route is the mailertable entry used, if any, for traces.
	Route string

	// Expansion lists the addresses an alias expanded into, without
	// duplicates, each already fully expanded.
	Expansion []string
	// Owner is the owner-LIST address that becomes the envelope sender of
	// the expansion; empty keeps the original sender.
	Owner string

	// Failure is set when the recipient cannot be resolved.
	Failure *Failure
}

// Event returns the RcptResolved event for a delivery or an expansion, or
// nil for a Failure (record Failure.RcptFailed, or a RcptDeferred for a
// temporary one). Expanded recipients are numbered from next and inherit
// orig's NOTIFY; their ORCPT is orig's ORCPT, or orig's address when the
// client gave none, so that DSNs name what the sender wrote.
func (r Result) Event(next int32, orig log.Recipient) *log.RcptResolved {
	if r.Failure != nil {
		return nil
	}
	ev := &log.RcptResolved{Mailer: r.Mailer, Port: r.Port, Socket: r.Socket, Destination: r.Destination, Owner: r.Owner}
	for _, h := range r.Hops {
		addrs := make([]string, len(h.Addrs))
		for i, a := range h.Addrs {
			addrs[i] = a.String()
		}
		ev.Hops = append(ev.Hops, log.NextHop{Host: h.Host, Preference: h.Preference, Addrs: addrs})
	}
	orcpt := orig.ORCPT
	if orcpt == "" && len(r.Expansion) > 0 {
		orcpt = "rfc822;" + orig.Addr
	}
	for i, addr := range r.Expansion {
		ev.Expansion = append(ev.Expansion, log.ExpandedRcpt{Rcpt: next + int32(i), Addr: addr, ORCPT: orcpt, Notify: orig.Notify})
	}
	return ev
}

// The failures the resolver gives, with the seed's texts where it has them.
func failBadAddress(err error) *Failure {
	return &Failure{553, "5.1.3", "Bad recipient address syntax: " + strings.TrimPrefix(err.Error(), "address: ")}
}

// Each call makes a new Failure, so that no caller shares one with
// another.
func failUserUnknown() *Failure { return &Failure{550, "5.1.1", "User unknown"} }
func failAliasLoop() *Failure   { return &Failure{554, "5.4.6", "Alias loop"} }
func failAliasDepth() *Failure  { return &Failure{554, "5.4.6", "Alias nesting too deep"} }
func failTooMany() *Failure     { return &Failure{554, "5.5.3", "Alias expands to too many recipients"} }

func failConfig(what string, err error) *Failure {
	return &Failure{451, "4.3.5", fmt.Sprintf("Configuration error in %s: %v", what, err)}
}

func failLookup(what string, err error) *Failure {
	if maps.IsTemporary(err) {
		return &Failure{451, "4.3.0", fmt.Sprintf("Temporary %s lookup failure", what)}
	}
	return &Failure{550, "5.3.0", fmt.Sprintf("%s lookup failed", what)}
}

// dnsFailure turns a DNS error for domain into the reply for a recipient.
func dnsFailure(domain string, err error) *Failure {
	var e *dnsclient.Error
	if !errors.As(err, &e) {
		return &Failure{451, "4.4.3", "Host name lookup failure for " + domain}
	}
	switch e.Kind {
	case dnsclient.NXDomain:
		return &Failure{550, "5.1.2", "Host unknown: " + domain}
	case dnsclient.NullMX:
		return &Failure{556, "5.1.10", "Recipient address has null MX"}
	case dnsclient.MXIsIP:
		return &Failure{550, "5.1.2", "MX record for " + domain + " names an IP address"}
	case dnsclient.NoAddress:
		return &Failure{550, "5.4.4", "Unable to route: no address for " + domain}
	}
	return &Failure{451, "4.4.3", "Host name lookup failure for " + domain}
}

// view is one resolution's consistent snapshot of the maps.
type view struct {
	*Resolver
	mt, aliases, users maps.Map
	trace              func(string)
	localCache         map[string]bool
}

func (r *Resolver) view(trace func(string)) *view {
	v := &view{Resolver: r, trace: trace, localCache: map[string]bool{}}
	if r.opts.Mailertable != nil {
		v.mt = maps.View(r.opts.Mailertable)
	}
	if r.opts.Aliases != nil {
		v.aliases = maps.View(r.opts.Aliases)
	}
	if r.opts.LocalUsers != nil {
		v.users = maps.View(r.opts.LocalUsers)
	}
	return v
}

func (v *view) tracef(format string, args ...any) {
	if v.trace != nil {
		v.trace(fmt.Sprintf(format, args...))
	}
}

func (v *view) stepTrace(mapName string) maps.Trace {
	if v.trace == nil {
		return nil
	}
	return func(s maps.Step) {
		switch {
		case s.Err != nil:
			v.tracef("%s: %s -> error: %v", mapName, s.Key, s.Err)
		case s.Found:
			v.tracef("%s: %s -> %q", mapName, s.Key, s.Value)
		default:
			v.tracef("%s: %s -> not found", mapName, s.Key)
		}
	}
}

// qualify appends domain (or the host name) to an unqualified address.
func (v *view) qualify(a maps.Address, domain string) maps.Address {
	if a.Domain == "" {
		if domain == "" {
			domain = v.opts.Hostname
		}
		a.Domain = domain
	}
	return a
}

// Resolve answers where rcpt goes: an expansion, a delivery, or a failure.
func (r *Resolver) Resolve(ctx context.Context, rcpt string) Result {
	return r.resolve(ctx, rcpt, nil)
}

// ResolveTrace is Resolve that reports each step (every key tried in every
// map, DNS answers) to trace, for smxctl map test.
func (r *Resolver) ResolveTrace(ctx context.Context, rcpt string, trace func(string)) Result {
	return r.resolve(ctx, rcpt, trace)
}

func (r *Resolver) resolve(ctx context.Context, rcpt string, trace func(string)) Result {
	v := r.view(trace)
	a, err := maps.ParseAddress(rcpt)
	if err == nil && a.IsNull() {
		err = errors.New("address: null address")
	}
	if err != nil {
		return Result{Address: rcpt, Failure: failBadAddress(err)}
	}
	a = v.qualify(a, "")
	res := Result{Address: a.String()}

	entries, expanded, f := v.expandTop(ctx, a)
	if f != nil {
		res.Failure = f
		return res
	}
	if expanded {
		res.Expansion = entries
		owner, f := v.owner(ctx, a)
		if f != nil {
			res.Failure = f
			return res
		}
		res.Owner = owner
		res.Local, _ = v.isLocal(ctx, a)
		v.tracef("expansion: %s", strings.Join(entries, " "))
		if owner != "" {
			v.tracef("owner: %s", owner)
		}
		return res
	}
	routed := v.route(ctx, a, true)
	routed.Address = res.Address
	return routed
}

// mailertableLookup finds the mailertable entry for a.
func (v *view) mailertableLookup(ctx context.Context, a maps.Address) (Route, bool, *Failure) {
	if v.mt == nil {
		return Route{}, false, nil
	}
	order := maps.Order{Flags: v.opts.MailertableFlags, Delimiters: v.opts.AddressDelimiters, NoAt: true}
	m, found, err := maps.Find(ctx, v.mt, "", order.AddressKeys(a), v.stepTrace("mailertable"))
	if err != nil {
		return Route{}, false, failLookup("mailertable", err)
	}
	if !found {
		return Route{}, false, nil
	}
	route, err := ParseRoute(m.Value)
	if err != nil {
		v.log.Error("resolver: bad mailertable entry", "key", m.Key.Key, "err", err)
		return Route{}, false, failConfig("mailertable entry "+m.Key.Key, err)
	}
	return route, true, nil
}

// isLocal reports whether a's domain is local: its mailertable entry uses
// lmtp: (seed 001, "Local Delivery and Specifying Local Domains").
func (v *view) isLocal(ctx context.Context, a maps.Address) (bool, *Failure) {
	key := maps.Fold(a.String())
	if local, ok := v.localCache[key]; ok {
		return local, nil
	}
	route, found, f := v.mailertableLookup(ctx, a)
	if f != nil {
		return false, f
	}
	local := found && route.Mailer == log.MailerLMTP
	v.localCache[key] = local
	return local, nil
}

// aliasLookup finds the aliases entry for a, honouring the flags.
func (v *view) aliasLookup(ctx context.Context, a maps.Address) (maps.Match, bool, *Failure) {
	if v.aliases == nil {
		return maps.Match{}, false, nil
	}
	flags := v.opts.AliasFlags
	var order maps.Flags
	if flags&AliasAllDomains != 0 {
		order |= maps.GenericAddress
	} else if flags&(AliasLocalDomains|AliasLocalPart) != 0 {
		local, f := v.isLocal(ctx, a)
		if f != nil {
			return maps.Match{}, false, f
		}
		if !local {
			return maps.Match{}, false, nil
		}
		if flags&AliasLocalDomains != 0 {
			order |= maps.GenericAddress
		}
	}
	if flags&AliasLocalPart != 0 {
		local := true
		if flags&AliasAllDomains != 0 {
			var f *Failure
			if local, f = v.isLocal(ctx, a); f != nil {
				return maps.Match{}, false, f
			}
		}
		if local {
			order |= maps.LocalPart
		}
	}
	if flags&AliasImplicitDetail != 0 {
		order |= maps.ImplicitDetail
	}
	o := maps.Order{Flags: order, Delimiters: v.opts.AddressDelimiters}
	m, found, err := maps.Find(ctx, v.aliases, "", o.AddressKeys(a), v.stepTrace("aliases"))
	if err != nil {
		return maps.Match{}, false, failLookup("aliases", err)
	}
	return m, found, nil
}

// aliasEntries parses the right-hand side of alias match m for address a
// into qualified addresses, replacing macros if asked.
func (v *view) aliasEntries(a maps.Address, m maps.Match) ([]maps.Address, error) {
	words, err := splitAliasRHS(m.Value)
	if err != nil {
		return nil, err
	}
	domain := ""
	if v.opts.AliasFlags&AliasPreserveDomain != 0 {
		domain = a.Domain
	}
	var out []maps.Address
	for _, w := range words {
		if v.opts.AliasFlags&AliasReplaceMacros != 0 {
			if w, err = replaceMacros(w, macrosFor(a, v.opts.AddressDelimiters, m.Key)); err != nil {
				return nil, err
			}
		}
		e, err := maps.ParseAddress(w)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", w, err)
		}
		if e.IsNull() {
			continue
		}
		out = append(out, v.qualify(e, domain))
	}
	return out, nil
}

// expandTop expands a if it is an alias. expanded is false when a is not an
// alias (or its entry is "local:").
func (v *view) expandTop(ctx context.Context, a maps.Address) (entries []string, expanded bool, f *Failure) {
	m, found, f := v.aliasLookup(ctx, a)
	if f != nil || !found || strings.TrimSpace(m.Value) == LocalRHS {
		return nil, false, f
	}
	seen := map[string]bool{}
	path := map[string]bool{maps.Fold(a.String()): true}
	var out []string
	if f := v.expandEntry(ctx, a, m, 1, path, seen, &out); f != nil {
		return nil, false, f
	}
	return out, true, nil
}

// expandEntry appends the leaves of alias entry m (for address a) to out.
// path holds the addresses being expanded above (loop detection), seen the
// leaves so far (duplicate removal).
func (v *view) expandEntry(ctx context.Context, a maps.Address, m maps.Match, depth int, path, seen map[string]bool, out *[]string) *Failure {
	entries, err := v.aliasEntries(a, m)
	if err != nil {
		v.log.Error("resolver: bad alias entry", "alias", m.Key.Key, "err", err)
		return failConfig("aliases entry "+m.Key.Key, err)
	}
	for _, e := range entries {
		key := maps.Fold(e.String())
		if path[key] {
			v.tracef("aliases: loop at %s", e)
			return failAliasLoop()
		}
		sub, found, f := v.aliasLookup(ctx, e)
		if f != nil {
			return f
		}
		if found && strings.TrimSpace(sub.Value) != LocalRHS {
			if depth >= v.opts.MaxAliasDepth {
				v.tracef("aliases: %s nests deeper than %d", e, v.opts.MaxAliasDepth)
				return failAliasDepth()
			}
			path[key] = true
			f := v.expandEntry(ctx, e, sub, depth+1, path, seen, out)
			delete(path, key)
			if f != nil {
				return f
			}
			continue
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		if len(*out) >= v.opts.MaxExpansion {
			return failTooMany()
		}
		*out = append(*out, e.String())
	}
	return nil
}

// owner returns "owner-LIST@domain" when the aliases map has it for list a.
func (v *view) owner(ctx context.Context, a maps.Address) (string, *Failure) {
	o := maps.Address{Local: "owner-" + a.Local, Domain: a.Domain}
	if len(o.Local) > 64 {
		return "", nil
	}
	_, found, f := v.aliasLookup(ctx, o)
	if f != nil || !found {
		return "", f
	}
	return o.String(), nil
}

// validLocal reports whether local address a exists: an aliases entry of
// any kind, or a local_user_map entry (seed 001, "Specifying Valid Local
// Addresses"). With neither map configured every local address is valid.
func (v *view) validLocal(ctx context.Context, a maps.Address) (bool, *Failure) {
	if v.aliases == nil && v.users == nil {
		return true, nil
	}
	if _, found, f := v.aliasLookup(ctx, a); f != nil || found {
		return found, f
	}
	if v.users == nil {
		return false, nil
	}
	flags := maps.LocalParts
	if v.opts.LocalUserImplicitDetail {
		flags |= maps.ImplicitDetail
	}
	o := maps.Order{Flags: flags, Delimiters: v.opts.AddressDelimiters}
	_, found, err := maps.Find(ctx, v.users, "", o.AddressKeys(a), v.stepTrace("local_user_map"))
	if err != nil {
		return false, failLookup("local_user_map", err)
	}
	return found, nil
}

// route finds the delivery for a, which is not an alias: mailertable, then
// DNS. With validate, a local address must exist.
func (v *view) route(ctx context.Context, a maps.Address, validate bool) Result {
	res := Result{Address: a.String()}
	route, found, f := v.mailertableLookup(ctx, a)
	if f != nil {
		res.Failure = f
		return res
	}
	if found {
		res.Route = route.String()
		res.Local = route.Mailer == log.MailerLMTP
		v.tracef("route: %s", res.Route)
	}
	if res.Local && validate {
		ok, f := v.validLocal(ctx, a)
		if f != nil {
			res.Failure = f
			return res
		}
		if !ok {
			v.tracef("local address %s does not exist", a)
			res.Failure = failUserUnknown()
			return res
		}
	}
	if !found {
		// No entry: DNS routes the domain, or an address literal names
		// the host itself.
		host := RouteHost{Name: strings.ToLower(a.Domain)}
		if strings.HasPrefix(a.Domain, "[") {
			lit, err := parseHost(a.Domain)
			if err != nil {
				res.Failure = &Failure{553, "5.1.3", "Bad address literal " + a.Domain}
				return res
			}
			host = lit
		}
		route = Route{Mailer: log.MailerESMTP, Hosts: []RouteHost{host}}
	}
	res.Mailer, res.Port = route.Mailer, route.Port
	if route.Socket {
		res.Socket = v.opts.LMTPSocket
		res.Destination = "lmtp:" + res.Socket
		return res
	}
	hops, f := v.hops(ctx, route.Hosts)
	if f != nil {
		res.Failure = f
		res.Mailer, res.Port = "", 0
		return res
	}
	res.Hops = hops
	port := route.Port
	if port == 0 {
		port = 25
	}
	names := make([]string, len(route.Hosts))
	for i, h := range route.Hosts {
		names[i] = h.String()
	}
	res.Destination = res.Mailer + ":" + strings.Join(names, ",") + ":" + strconv.Itoa(port)
	return res
}

// hops resolves a host list: literals as they are, names by MX lookup.
// Hosts that fail are skipped while another host has addresses.
func (v *view) hops(ctx context.Context, hosts []RouteHost) ([]Hop, *Failure) {
	var out []Hop
	var first *Failure
	for _, h := range hosts {
		if h.Literal.IsValid() {
			out = append(out, Hop{Host: h.Literal.String(), Addrs: []netip.Addr{h.Literal}})
			continue
		}
		if v.opts.DNS == nil {
			return nil, failConfig("resolver", errors.New("no DNS resolver configured"))
		}
		dhosts, err := v.opts.DNS.Route(ctx, h.Name)
		if err != nil {
			v.tracef("dns: %s: %v", h.Name, err)
			f := dnsFailure(h.Name, err)
			if first == nil || (f.Temporary() && !first.Temporary()) {
				first = f
			}
			continue
		}
		for _, d := range dhosts {
			v.tracef("dns: %s: %s pref %d %v", h.Name, d.Name, d.Preference, d.Addrs)
			out = append(out, Hop{Host: d.Name, Preference: d.Preference, Addrs: d.Addrs})
		}
	}
	if len(out) == 0 {
		return nil, first
	}
	return out, nil
}

// Route finds where mail for a would go without alias expansion or local
// validation: the mailertable, then DNS. The policy uses it to see whether
// a sender address is routable and which addresses its MX hosts have.
func (r *Resolver) Route(ctx context.Context, a maps.Address) Result {
	v := r.view(nil)
	return v.route(ctx, v.qualify(a, ""), false)
}

// IsLocal reports whether a's domain is local: its mailertable entry uses
// the lmtp mailer.
func (r *Resolver) IsLocal(ctx context.Context, a maps.Address) (bool, *Failure) {
	v := r.view(nil)
	return v.isLocal(ctx, v.qualify(a, ""))
}

// ValidLocal reports whether the local address a exists: it has an aliases
// entry (an alias or "local:") or a local_user_map entry. With neither map
// configured every local address exists.
func (r *Resolver) ValidLocal(ctx context.Context, a maps.Address) (bool, *Failure) {
	v := r.view(nil)
	return v.validLocal(ctx, v.qualify(a, ""))
}

// ListMembers returns the addresses alias a expands to, one level deep (the
// policy's list: restriction does not expand recursively). found is false
// when a is not an alias.
func (r *Resolver) ListMembers(ctx context.Context, a maps.Address) (members []maps.Address, found bool, f *Failure) {
	v := r.view(nil)
	a = v.qualify(a, "")
	m, found, f := v.aliasLookup(ctx, a)
	if f != nil || !found || strings.TrimSpace(m.Value) == LocalRHS {
		return nil, false, f
	}
	entries, err := v.aliasEntries(a, m)
	if err != nil {
		return nil, true, failConfig("aliases entry "+m.Key.Key, err)
	}
	return entries, true, nil
}

// Delimiters returns the address delimiters in use (address_delimiter).
func (r *Resolver) Delimiters() string { return r.opts.AddressDelimiters }
