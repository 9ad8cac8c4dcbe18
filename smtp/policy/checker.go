package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"

	"github.com/smx-mta/smx/smtp/maps"
	"github.com/smx-mta/smx/smtp/policy/greylist"
	"github.com/smx-mta/smx/smtp/resolver"
	"github.com/smx-mta/smx/smtp/resolver/dnsclient"
)

// DNS is what the checker asks of DNS; *dnsclient.Client is one. Errors
// are classified with dnsclient.IsTemporary and *dnsclient.Error kinds.
type DNS interface {
	LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error)
	LookupA(ctx context.Context, name string) ([]netip.Addr, error)
	LookupAAAA(ctx context.Context, name string) ([]netip.Addr, error)
}

// DNSBL is one smar dnsbl section.
type DNSBL struct {
	// Domain is the list's DNS domain (option domain), e.g. dnsbl.tld.
	Domain string
	// Tag is the access map tag results are looked up with (option
	// tag); a colon is added as the seed says.
	Tag string
}

// MatchType is protected_recipients { match_type }.
type MatchType uint8

// The match types.
const (
	MatchExact          MatchType = iota // the default: exact matches
	MatchGeneric                         // generic_lookup: the lookup order of section 3.12.1
	MatchImplicitDetail                  // implicitly_match_detail: generic, and user matches user+detail
)

// ProtectedRecipients is the smtps protected_recipients section.
type ProtectedRecipients struct {
	// AllowBySender enables from: and list: restrictions (allow_by {
	// sender }).
	AllowBySender bool
	// AllowByClientIP enables cltaddr: restrictions (allow_by {
	// client_ip }).
	AllowByClientIP bool
	// MatchType is match_type.
	MatchType MatchType
}

func (p ProtectedRecipients) enabled() bool { return p.AllowBySender || p.AllowByClientIP }

// Options configure a Checker. Zero fields take the documented defaults.
type Options struct {
	// Access is the access map (smar access_map). Nil means the smtps
	// flag access is off: no access map checks and no client name
	// lookups.
	Access maps.Map
	// Resolver answers routability and local-address questions.
	// Required.
	Resolver *resolver.Resolver
	// DNS looks up client names and DNS blacklists. Required when Access
	// is set.
	DNS DNS
	// DNSBL are the smar dnsbl sections, in the order given. Their
	// answers are looked up in the access map, so they need it.
	DNSBL []DNSBL
	// DelayChecks is the smtps flag delay_checks: rejections at connect
	// and MAIL (unless quick:) are returned at RCPT instead.
	DelayChecks bool
	// LMTPDoesNotImplyRelaying is the smtps flag of that name: domains
	// with lmtp: in the mailertable are not local for relaying.
	LMTPDoesNotImplyRelaying bool
	// SoftBounce is the smtps flag soft_bounce: every 5xx rejection the
	// checker returns becomes 4xx (and 5.X.Y becomes 4.X.Y).
	SoftBounce bool
	// RelayClients are the client networks allowed to relay, as the seed's
	// -T option and relay_clients in smx.conf allow.
	RelayClients []netip.Prefix
	// AllowRelayingIfVerified is the tls flag allow_relaying_if_verified.
	AllowRelayingIfVerified bool
	// CheckAccessMapForRelaying is the tls flag
	// check_access_map_for_relaying: certissuer: and certsubject:
	// entries can allow relaying for a verified certificate.
	CheckAccessMapForRelaying bool
	// TrustedMechanisms are auth { trusted_mechs }: SASL mechanisms after
	// which relaying is allowed.
	TrustedMechanisms []string
	// Protected is the protected_recipients section.
	Protected ProtectedRecipients
	// Greylist is the smar greylisting state; nil means the smtps flags
	// greylisting and fullgreylisting are off.
	Greylist *greylist.Greylister
	// FullGreylisting keys greylisting by client, sender and recipient
	// (the smtps flag fullgreylisting) instead of the client alone.
	FullGreylisting bool
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

// Checker makes the policy decisions of SMTP sessions. It is safe for
// concurrent use; per-session state is in Session.
type Checker struct {
	opts Options
	log  *slog.Logger
}

// New returns a Checker.
func New(opts Options) (*Checker, error) {
	if opts.Resolver == nil {
		return nil, errors.New("policy: no resolver")
	}
	if opts.Access != nil && opts.DNS == nil {
		return nil, errors.New("policy: the access map needs DNS")
	}
	for _, bl := range opts.DNSBL {
		if bl.Domain == "" || bl.Tag == "" {
			return nil, errors.New("policy: dnsbl needs domain and tag")
		}
	}
	l := opts.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &Checker{opts: opts, log: l}, nil
}

// The checker's own rejections.
var (
	replyRelayDenied  = Decision{Action: Reject, Code: 550, Enhanced: "5.7.1", Text: "Relaying denied"}
	replyUserUnknown  = Decision{Action: Reject, Code: 550, Enhanced: "5.1.1", Text: "User unknown"}
	replySenderNoSuch = Decision{Action: Reject, Code: 553, Enhanced: "5.1.8", Text: "Sender address does not exist"}
	replySenderNullMX = Decision{Action: Reject, Code: 550, Enhanced: "5.7.27", Text: "Sender address has null MX"}
	replySenderTemp   = Decision{Action: Reject, Code: 451, Enhanced: "4.1.8", Text: "Sender address does not resolve"}
	replyProtected    = Decision{Action: Reject, Code: 550, Enhanced: "5.7.1", Text: "Protected recipient"}
	replyGreylisted   = Decision{Action: Reject, Code: 421, Enhanced: "4.7.0", Text: "Greylisted, try again later",
		Reason: "greylisting", Greylisted: true}
)

func replyBadAddress(enhanced string, err error) Decision {
	return Decision{Action: Reject, Code: 553, Enhanced: enhanced,
		Text: "Bad address syntax: " + strings.TrimPrefix(err.Error(), "address: ")}
}

func replyTemp(text string) Decision {
	return Decision{Action: Reject, Code: 451, Enhanced: "4.3.0", Text: text}
}

func replyConfig(text string) Decision {
	return Decision{Action: Reject, Code: 451, Enhanced: "4.3.5", Text: text}
}

func fromFailure(f *resolver.Failure) Decision {
	return Decision{Action: Reject, Code: f.Code, Enhanced: f.Enhanced, Text: f.Text}
}

// finish applies soft_bounce to what a Checker method returns.
func (c *Checker) finish(d Decision) Decision {
	if c.opts.SoftBounce && d.Action == Reject && d.Code/100 == 5 {
		d.Code -= 100
		if strings.HasPrefix(d.Enhanced, "5.") {
			d.Enhanced = "4" + d.Enhanced[1:]
		}
	}
	return d
}

// access looks up tag+keys in the access map and parses the right-hand
// side. found is false when no key matched. A malformed entry or a failed
// lookup is a temporary rejection: mail must not bounce for a
// configuration error.
func (c *Checker) access(ctx context.Context, m maps.Map, tag string, keys []maps.Key) (d Decision, found bool) {
	match, found, err := maps.Find(ctx, m, tag, keys, nil)
	if err != nil {
		c.log.Warn("policy: access map lookup failed", "tag", tag, "err", err)
		return replyTemp("Temporary access map failure"), true
	}
	if !found {
		return Decision{}, false
	}
	d, err = ParseRHS(match.Value)
	if err != nil {
		c.log.Error("policy: bad access map entry", "key", tag+match.Key.Key, "err", err)
		return replyConfig("Configuration error in access map entry " + tag + match.Key.Key), true
	}
	d.Reason = "access " + tag + match.Key.Key
	return d, true
}

func (c *Checker) addressOrder() maps.Order {
	return maps.Order{Flags: maps.GenericAddress | maps.LocalPart, Delimiters: c.opts.Resolver.Delimiters()}
}

// Connect runs the connect checks (seed 002, section 3.12.2, "Connect"):
// cltaddr:, the client name lookups, cltresolve:, cltname:, then the DNS
// blacklists, stopping at the first that says something other than cont.
// It returns the Session for the rest of the dialogue and the decision for
// the connection: Reject (the server replies with it and closes, or for a
// 4xx may keep the session refusing commands), Discard (accept everything,
// deliver nothing), or Accept/Relay.
func (c *Checker) Connect(ctx context.Context, info ClientInfo) (*Session, Decision) {
	s := &Session{client: info}
	ip := info.Addr.Unmap()
	for _, p := range c.opts.RelayClients {
		if p.Contains(ip) {
			s.relayAllowed = true
		}
	}
	if c.opts.Access == nil {
		// Without the access map (the smtps flag access off) there is
		// nothing to look client facts up in: no lookups at all.
		return s, c.finish(Decision{Action: Accept})
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	access := maps.View(c.opts.Access)

	// check: cltaddr:. An entry that decides also spares the client the
	// blacklist queries (seed 002, "dnsbl": "DNS lookups in blacklists can
	// be disabled via entries in the access map using the tag cltaddr").
	d, found := c.access(ctx, access, TagClientAddr, maps.Keys(maps.IPKeys(ip)...))
	decided := found && d.Action != Continue
	// Operations that do not decide anything by themselves: start the
	// blacklist queries and find the client's name. The name is needed
	// whatever the checks say: it goes into Received:.
	var blacklists []chan dnsblResult
	if !decided {
		blacklists = c.startDNSBL(ctx, ip)
	}
	s.clientName, s.clientResolve = c.clientName(ctx, ip)
	if decided {
		return s, c.finish(c.connectDecision(s, d))
	}

	checks := []func() (Decision, bool){
		func() (Decision, bool) {
			return c.access(ctx, access, TagClientResolve, maps.Keys(s.clientResolve))
		},
		func() (Decision, bool) {
			if s.clientName == "" {
				return Decision{}, false
			}
			// DNS names carry their trailing dot, and so must the
			// entries (seed 002, "Access Map").
			return c.access(ctx, access, TagClientName, maps.Keys(maps.DomainKeys(s.clientName+".", true, false)...))
		},
	}
	checks = append(checks, func() (Decision, bool) { return c.checkDNSBL(ctx, access, blacklists) })
	for _, check := range checks {
		d, found := check()
		if !found || d.Action == Continue {
			continue
		}
		return s, c.finish(c.connectDecision(s, d))
	}
	return s, c.finish(Decision{Action: Accept})
}

// connectDecision records what a deciding connect check means for the
// session.
func (c *Checker) connectDecision(s *Session, d Decision) Decision {
	switch d.Action {
	case Relay:
		s.relayAllowed, s.sessionOK = true, true
		if d.Quick {
			s.sessionQuick = Relay
		}
	case Accept:
		s.sessionOK = true
		if d.Quick {
			s.sessionQuick = Accept
		}
	case Discard:
		s.discardSession = true
	case Reject:
		if c.opts.DelayChecks && !d.Quick {
			held := d
			s.sessionDelayed = &held
			return Decision{Action: Accept, Reason: "delayed: " + d.Reason}
		}
	}
	return d
}

// clientName maps the client address to a verified name: the PTR names,
// each looked up forward until one has the client's address.
func (c *Checker) clientName(ctx context.Context, ip netip.Addr) (name, result string) {
	names, err := c.opts.DNS.LookupPTR(ctx, ip)
	if err != nil {
		if dnsclient.IsTemporary(err) {
			return "", ResolveTempPTR
		}
		return "", ResolveNo
	}
	temp := false
	for i, n := range names {
		if i == 10 {
			break // enough: a client with more names is playing games
		}
		var addrs []netip.Addr
		if ip.Is4() {
			addrs, err = c.opts.DNS.LookupA(ctx, n)
		} else {
			addrs, err = c.opts.DNS.LookupAAAA(ctx, n)
		}
		if err != nil {
			temp = temp || dnsclient.IsTemporary(err)
			continue
		}
		if slices.Contains(addrs, ip) {
			return strings.TrimSuffix(n, "."), ResolveOK
		}
	}
	if temp {
		return "", ResolveTempA
	}
	return "", ResolveNo
}

// dnsblResult is the outcome of one blacklist query.
type dnsblResult struct {
	addrs []netip.Addr
	err   error
}

// startDNSBL queries every blacklist concurrently; the results are read in
// the order the lists are configured.
func (c *Checker) startDNSBL(ctx context.Context, ip netip.Addr) []chan dnsblResult {
	out := make([]chan dnsblResult, len(c.opts.DNSBL))
	for i, bl := range c.opts.DNSBL {
		ch := make(chan dnsblResult, 1)
		out[i] = ch
		name := reverseName(ip) + "." + strings.TrimSuffix(bl.Domain, ".")
		go func() {
			addrs, err := c.opts.DNS.LookupA(ctx, name)
			ch <- dnsblResult{addrs, err}
		}()
	}
	return out
}

// reverseName is D.C.B.A for IPv4 A.B.C.D, and the nibbles in reverse for
// IPv6 (RFC 5782).
func reverseName(ip netip.Addr) string {
	if ip.Is4() {
		b := ip.As4()
		return fmt.Sprintf("%d.%d.%d.%d", b[3], b[2], b[1], b[0])
	}
	b := ip.As16()
	const hex = "0123456789abcdef"
	parts := make([]string, 0, 32)
	for i := 15; i >= 0; i-- {
		parts = append(parts, string(hex[b[i]&0xf]), string(hex[b[i]>>4]))
	}
	return strings.Join(parts, ".")
}

// checkDNSBL looks the blacklist answers up in the access map: tag:W.X.Y.Z
// for each A record in the order given, tag:temp for a temporary failure
// and tag:perm for a permanent one (NXDOMAIN means "not listed"). The first
// entry found decides.
func (c *Checker) checkDNSBL(ctx context.Context, access maps.Map, results []chan dnsblResult) (Decision, bool) {
	for i, bl := range c.opts.DNSBL {
		var r dnsblResult
		select {
		case r = <-results[i]:
		case <-ctx.Done():
			return replyTemp("Temporary DNS blacklist failure"), true
		}
		tag := bl.Tag + ":"
		var keys []string
		var kind dnsclient.Kind
		var derr *dnsclient.Error
		if errors.As(r.err, &derr) {
			kind = derr.Kind
		}
		switch {
		case r.err == nil:
			for _, a := range r.addrs {
				keys = append(keys, a.String())
			}
		case kind == dnsclient.NXDomain || kind == dnsclient.NoAddress:
		case dnsclient.IsTemporary(r.err):
			keys = []string{"temp"}
		default:
			keys = []string{"perm"}
		}
		for _, k := range keys {
			if d, found := c.access(ctx, access, tag, maps.Keys(k)); found && d.Action != Continue {
				d.Reason = "dnsbl " + bl.Domain + ": " + d.Reason
				return d, true
			}
		}
	}
	return Decision{}, false
}

// StartTLS tells the checker about the certificate the client presented.
// With allow_relaying_if_verified a verified certificate allows relaying;
// with check_access_map_for_relaying the encoded issuer DN is looked up
// with certissuer: (relay allows relaying, cont goes on to the subject with
// certsubject:, where relay allows relaying); other values are ignored.
func (c *Checker) StartTLS(ctx context.Context, s *Session, cert CertInfo) {
	if !cert.Verified {
		return
	}
	if c.opts.AllowRelayingIfVerified {
		s.relayAllowed = true
	}
	if !c.opts.CheckAccessMapForRelaying || c.opts.Access == nil {
		return
	}
	access := maps.View(c.opts.Access)
	d, found := c.access(ctx, access, TagCertIssuer, maps.Keys(EncodeDN(cert.Issuer)))
	if !found {
		return
	}
	switch d.Action {
	case Relay:
		s.relayAllowed = true
	case Continue:
		if d, found := c.access(ctx, access, TagCertSubject, maps.Keys(EncodeDN(cert.Subject))); found && d.Action == Relay {
			s.relayAllowed = true
		}
	}
}

// Auth tells the checker that the client authenticated with mechanism; a
// mechanism in trusted_mechs allows relaying.
func (c *Checker) Auth(s *Session, mechanism string) {
	for _, m := range c.opts.TrustedMechanisms {
		if strings.EqualFold(m, mechanism) {
			s.relayAllowed = true
		}
	}
}

// Mail runs the checks of a MAIL command (seed 002, section 3.12.2,
// "MAIL") for sender (without angle brackets, "" for <>) unless the
// session check ended in quick:ok or quick:relay: routability, local part
// validity for local domains, from:, and mxbadip: for the addresses found.
// With delay_checks a rejection other than quick:error is held until RCPT.
// Mail starts a new transaction in s.
func (c *Checker) Mail(ctx context.Context, s *Session, sender string) Decision {
	s.sender, s.discardTxn, s.mailDelayed = sender, false, nil
	if s.discardSession {
		return Decision{Action: Discard, Reason: "session discarded"}
	}
	a, err := maps.ParseAddress(sender)
	if err == nil && a.IsNull() || s.sessionQuick == Accept || s.sessionQuick == Relay {
		return c.finish(Decision{Action: Accept})
	}
	if err == nil && a.Domain == "" {
		err = errors.New("address: sender address must be fully qualified")
	}
	if err != nil {
		return c.finish(replyBadAddress("5.1.7", err))
	}
	d := c.mailChecks(ctx, s, a)
	switch d.Action {
	case Discard:
		s.discardTxn = true
	case Reject:
		if c.opts.DelayChecks && !d.Quick {
			held := d
			s.mailDelayed = &held
			return c.finish(Decision{Action: Accept, Reason: "delayed: " + d.Reason})
		}
	case Continue:
		d.Action = Accept
	}
	return c.finish(d)
}

func (c *Checker) mailChecks(ctx context.Context, s *Session, a maps.Address) Decision {
	// 1. Is the address routable, as a recipient of a DSN would have to be?
	route := c.opts.Resolver.Route(ctx, a)
	if f := route.Failure; f != nil {
		d := replySenderNoSuch
		switch {
		case f.Temporary():
			d = replySenderTemp
		case f.Enhanced == "5.1.10":
			d = replySenderNullMX
		}
		d.Reason = "sender not routable: " + f.Error()
		return d
	}
	// 2. A local sender must exist.
	if route.Local {
		ok, f := c.opts.Resolver.ValidLocal(ctx, a)
		if f != nil {
			return fromFailure(f)
		}
		if !ok {
			d := replySenderNoSuch
			d.Reason = "local sender does not exist"
			return d
		}
	}
	if c.opts.Access == nil {
		return Decision{Action: Continue}
	}
	access := maps.View(c.opts.Access)
	// 3. from:
	if d, found := c.access(ctx, access, TagFrom, c.addressOrder().AddressKeys(a)); found && d.Action != Continue {
		if d.Action == Relay {
			// relay means nothing for from:; the seed allows it only
			// for to:, cltaddr:, cltname: and the cert tags.
			d.Action = Accept
		}
		return d
	}
	// 4. mxbadip: for the addresses found while routing.
	for _, h := range route.Hops {
		for _, ip := range h.Addrs {
			if d, found := c.access(ctx, access, TagMXBadIP, maps.Keys(maps.IPKeys(ip)...)); found && d.Action == Reject {
				return d
			}
		}
	}
	return Decision{Action: Continue}
}

// Rcpt runs the checks of a RCPT command (seed 002, section 3.12.2,
// "RCPT") for rcpt (without angle brackets): the relay check (a local
// recipient must exist; otherwise relaying must be allowed for the session
// or by to: relay), protectedrcpt:, to:, any rejection that delay_checks
// held back (which a to: quick:ok or quick:relay overrides), and finally
// greylisting, whose 421 has Greylisted set.
// Discard with Quick set discards the whole transaction.
func (c *Checker) Rcpt(ctx context.Context, s *Session, rcpt string) Decision {
	if s.discardSession || s.discardTxn {
		return Decision{Action: Discard, Reason: "transaction discarded"}
	}
	a, err := maps.ParseAddress(rcpt)
	if err == nil && a.IsNull() {
		err = errors.New("address: empty recipient")
	}
	if err != nil {
		return c.finish(replyBadAddress("5.1.3", err))
	}
	d := c.rcptChecks(ctx, s, a)
	if d.Action == Discard && d.Quick {
		s.discardTxn = true
	}
	if d.Action == Continue {
		d.Action = Accept
	}
	return c.finish(d)
}

func (c *Checker) rcptChecks(ctx context.Context, s *Session, a maps.Address) Decision {
	var access maps.Map
	if c.opts.Access != nil && s.sessionQuick != Relay {
		access = maps.View(c.opts.Access)
	}
	// The to: entry is looked up at most once and used by both checks.
	var toEntry *Decision
	lookupTo := func() Decision {
		if toEntry == nil {
			d, found := Decision{Action: Continue}, false
			if access != nil {
				d, found = c.access(ctx, access, TagTo, c.addressOrder().AddressKeys(a))
			}
			if !found {
				d = Decision{Action: Continue}
			}
			toEntry = &d
		}
		return *toEntry
	}

	// Case 1: is this a relaying attempt, and is it authorized?
	local, f := c.opts.Resolver.IsLocal(ctx, a)
	if f != nil {
		return fromFailure(f)
	}
	if local {
		ok, f := c.opts.Resolver.ValidLocal(ctx, a)
		if f != nil {
			return fromFailure(f)
		}
		if !ok {
			d := replyUserUnknown
			d.Reason = "local recipient does not exist"
			return d
		}
	}
	relayed := local && !c.opts.LMTPDoesNotImplyRelaying || s.relayAllowed
	if !relayed {
		d := lookupTo()
		switch d.Action {
		case Relay:
			relayed = true
		case Reject:
			return d
		}
		if !relayed {
			d := replyRelayDenied
			d.Reason = "relaying denied"
			return d
		}
	}

	// Case 2: other restrictions for the recipient.
	if access != nil && c.opts.Protected.enabled() {
		if d, decided := c.protected(ctx, access, s, a); decided {
			return d
		}
	}
	final := Decision{Action: Continue}
	skipTo := access == nil || (s.sessionQuick == Accept && s.relayAllowed)
	if !skipTo {
		d := lookupTo()
		switch d.Action {
		case Reject, Discard:
			return d
		case Accept, Relay:
			if d.Quick {
				// quick:ok and quick:relay override held rejections.
				return Decision{Action: Accept, Quick: true, Reason: d.Reason}
			}
			final = Decision{Action: Accept, Reason: d.Reason}
		}
	}
	if s.sessionDelayed != nil {
		return *s.sessionDelayed
	}
	if s.mailDelayed != nil {
		return *s.mailDelayed
	}
	// 3. Greylisting, for a recipient that passed everything else, unless
	// the session is marked ok or relay (by the access map, AUTH or
	// STARTTLS).
	if c.opts.Greylist != nil && !s.sessionOK && !s.relayAllowed {
		key := c.opts.Greylist.ClientKey(s.client.Addr)
		if c.opts.FullGreylisting {
			key = c.opts.Greylist.TupleKey(s.client.Addr, maps.Fold(s.sender), maps.Fold(a.String()))
		}
		r, err := c.opts.Greylist.Check(key)
		if err != nil {
			// A broken greylisting database must not stop mail: let it
			// pass and say so.
			c.log.Error("policy: greylisting failed; recipient passes", "err", err)
		} else if r == greylist.Greylisted {
			return replyGreylisted
		}
	}
	return final
}

// Verify answers VRFY (RFC 5321, section 3.5) for addr, for an SMTP server
// that has VRFY enabled, from local recipient validation: Accept when addr
// is in a local domain (its mailertable entry uses lmtp:) and exists (an
// alias, a local: entry or a local_user_map entry), 550 5.1.1 when it is
// local and does not exist, a temporary rejection when the maps cannot
// say, and Continue when addr is not local: nobody here can verify it, and
// the server answers 252. A bare user name is qualified with the resolver's
// host name, as RCPT would qualify it. An address that does not parse is
// 501 5.1.3 (a syntax error, which soft_bounce leaves alone). Verify looks
// at no access map entry and changes no session state.
func (c *Checker) Verify(ctx context.Context, addr string) Decision {
	a, err := maps.ParseAddress(addr)
	if err == nil && a.IsNull() {
		err = errors.New("address: empty address")
	}
	if err != nil {
		d := replyBadAddress("5.1.3", err)
		d.Code = 501
		return d
	}
	local, f := c.opts.Resolver.IsLocal(ctx, a)
	if f != nil {
		return c.finish(fromFailure(f))
	}
	if !local {
		return Decision{Action: Continue, Reason: "not a local address"}
	}
	ok, f := c.opts.Resolver.ValidLocal(ctx, a)
	switch {
	case f != nil:
		return c.finish(fromFailure(f))
	case !ok:
		d := replyUserUnknown
		d.Reason = "local recipient does not exist"
		return c.finish(d)
	}
	return Decision{Action: Accept, Reason: "local recipient exists"}
}

// protected checks a protectedrcpt: entry for a (seed 002, section
// 3.10.3): its restrictions are tried in order and the first that matches
// accepts; when none matches the recipient is rejected. decided is false
// when a is not protected.
func (c *Checker) protected(ctx context.Context, access maps.Map, s *Session, a maps.Address) (Decision, bool) {
	d, found, value := c.lookupProtected(ctx, access, a)
	if !found {
		return Decision{}, false
	}
	if d.Action == Reject {
		return d, true
	}
	p := c.opts.Protected
	for _, restriction := range strings.Fields(value) {
		kind, arg, ok := strings.Cut(restriction, ":")
		if !ok {
			c.log.Error("policy: bad protectedrcpt restriction", "recipient", a.String(), "restriction", restriction)
			return replyConfig("Configuration error in protectedrcpt entry"), true
		}
		arg = strings.TrimSuffix(strings.TrimPrefix(arg, "<"), ">")
		switch strings.ToLower(kind) {
		case "from":
			if p.AllowBySender && c.senderMatches(s.sender, arg) {
				return Decision{Action: Continue}, false
			}
		case "cltaddr":
			if p.AllowByClientIP && c.clientMatches(s.client.Addr, arg) {
				return Decision{Action: Continue}, false
			}
		case "list":
			if !p.AllowBySender {
				continue
			}
			list, err := maps.ParseAddress(arg)
			if err != nil {
				return replyConfig("Configuration error in protectedrcpt entry"), true
			}
			members, _, f := c.opts.Resolver.ListMembers(ctx, list)
			if f != nil {
				return fromFailure(f), true
			}
			for _, m := range members {
				if c.senderMatches(s.sender, m.String()) {
					return Decision{Action: Continue}, false
				}
			}
		default:
			c.log.Error("policy: unknown protectedrcpt restriction", "recipient", a.String(), "restriction", restriction)
			return replyConfig("Configuration error in protectedrcpt entry"), true
		}
	}
	d = replyProtected
	d.Reason = "protected recipient " + a.String()
	return d, true
}

func (c *Checker) lookupProtected(ctx context.Context, access maps.Map, a maps.Address) (Decision, bool, string) {
	match, found, err := maps.Find(ctx, access, TagProtectedRcpt, c.addressOrder().AddressKeys(a), nil)
	if err != nil {
		return replyTemp("Temporary access map failure"), true, ""
	}
	return Decision{}, found, match.Value
}

// senderMatches reports whether sender matches pattern: equal, or with
// generic matching, pattern is one of the sender's lookup keys.
func (c *Checker) senderMatches(sender, pattern string) bool {
	pattern = maps.Fold(pattern)
	if c.opts.Protected.MatchType == MatchExact {
		return maps.Fold(sender) == pattern
	}
	a, err := maps.ParseAddress(sender)
	if err != nil || a.IsNull() {
		return false
	}
	order := c.addressOrder()
	if c.opts.Protected.MatchType == MatchImplicitDetail {
		order.Flags |= maps.ImplicitDetail
	}
	for _, k := range order.AddressKeys(a) {
		if k.Key == pattern {
			return true
		}
	}
	return false
}

// clientMatches reports whether ip matches pattern: equal, or with generic
// matching, a net of it (A.B.C, A.B, A).
func (c *Checker) clientMatches(ip netip.Addr, pattern string) bool {
	keys := maps.IPKeys(ip)
	if len(keys) == 0 {
		return false
	}
	if c.opts.Protected.MatchType == MatchExact {
		keys = keys[:1]
	}
	return slices.Contains(keys, maps.Fold(pattern))
}
