// Package wire turns a parsed smx.conf (package cmd/smxd/conf) into the
// Options of each component and builds SMAR (maps, resolver, policy
// checkers) from it. It is the one place where configuration sections
// meet component packages: the components never import conf, and smxd
// and smxctl build SMAR the same way through here.
//
// The package only opens the files the configuration names (maps, TLS
// certificates, the qmgr_conf map, the credential map); it starts
// nothing and keeps no state.
package wire

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"time"

	"github.com/smx-mta/smx/cmd/smxd/conf"
	"github.com/smx-mta/smx/smtp/maps"
	"github.com/smx-mta/smx/smtp/policy"
	"github.com/smx-mta/smx/smtp/policy/greylist"
	"github.com/smx-mta/smx/smtp/resolver"
	"github.com/smx-mta/smx/smtp/resolver/dnsclient"
)

// The names under which SMAR's own maps are found when smx.conf gives
// them as files rather than as declared maps.
const (
	MapAccess      = "access_map"
	MapAliases     = "aliases"
	MapMailertable = "mailertable"
)

// SMAR is the address resolver and what it is built from: the maps, the
// DNS client and the resolver. Policy checkers are per SMTP server (their
// options come from the smtps sections); NewChecker builds them.
type SMAR struct {
	Maps     *maps.Set
	DNS      *dnsclient.Client
	Resolver *resolver.Resolver
	// Access is the access map, nil when no smtps section has the
	// access flag or its file is the default one and does not exist.
	Access maps.Map
	// Notes say which optional default map files were not found and so
	// are not used.
	Notes []string
	// Files are the map files read, for the permission checks and
	// reloads.
	Files []string
}

// Close releases the socket map connections.
func (s *SMAR) Close() error { return s.Maps.Close() }

// NeedsAccessMap reports whether any smtps section has the access flag.
func NeedsAccessMap(c *conf.Config) bool {
	for _, s := range c.SMTPS {
		if s.Flags.Access {
			return true
		}
	}
	return false
}

// MapSpecs turns the map declarations and smar's file-named maps
// (mailertable, aliases and, when withAccess, access_map) into Specs.
// A file-named map whose file is the default and does not exist is left
// out, with a note: the embedded default names files that a fresh
// checkout does not have. A file the configuration names explicitly must
// exist.
func MapSpecs(c *conf.Config, withAccess bool) (specs []maps.Spec, notes []string, err error) {
	for _, m := range c.SMAR.Maps {
		if m.Type == "cdb" {
			return nil, nil, fmt.Errorf("map %s: type cdb (tinycdb) is not supported; use type hash", m.Name)
		}
		spec := maps.Spec{Name: m.Name, Type: m.Type, File: m.File, MapName: m.MapName,
			Path: m.Path, Address: m.Address, Port: m.Port, Maps: m.Maps, Timeout: 5 * time.Second}
		if m.Name == c.SMAR.Aliases.Name {
			spec.Format = maps.FormatAliases
		}
		switch m.Name {
		case c.SMAR.Mailertable.Name:
			spec.Validate = resolver.CheckMailertable
		case c.SMAR.AccessMap.Name:
			spec.Validate = policy.CheckAccessMap(dnsblTags(c))
		}
		specs = append(specs, spec)
	}
	files := []struct {
		name, file, ref, option string
		format                  maps.Format
		validate                func(map[string]string) error
		use                     bool
	}{
		{MapMailertable, c.SMAR.Mailertable.File, c.SMAR.Mailertable.Name, "smar.mailertable.file", maps.FormatPlain, resolver.CheckMailertable, true},
		{MapAliases, c.SMAR.Aliases.File, c.SMAR.Aliases.Name, "smar.aliases.file", maps.FormatAliases, nil, true},
		{MapAccess, c.SMAR.AccessMap.File, c.SMAR.AccessMap.Name, "smar.access_map.file", maps.FormatPlain, policy.CheckAccessMap(dnsblTags(c)), withAccess},
	}
	for _, f := range files {
		if f.ref != "" || f.file == "" || !f.use {
			continue
		}
		if _, err := os.Stat(f.file); errors.Is(err, fs.ErrNotExist) {
			if _, set := c.Pos(f.option); !set {
				notes = append(notes, fmt.Sprintf("%s: default file %s does not exist; none is used", f.name, f.file))
				continue
			}
		}
		specs = append(specs, maps.Spec{Name: f.name, Type: maps.TypeHash, File: f.file, Format: f.format, Validate: f.validate})
	}
	return specs, notes, nil
}

func dnsblTags(c *conf.Config) []string {
	var tags []string
	for _, bl := range c.SMAR.DNSBL {
		tags = append(tags, bl.Tag)
	}
	return tags
}

// DNSOptions maps smar's DNS section onto the DNS client's Options.
func DNSOptions(c *conf.Config) dnsclient.Options {
	o := dnsclient.Options{
		Timeout:  c.SMAR.DNS.Timeout,
		Attempts: c.SMAR.DNS.Retries + 1,
		UseTCP:   c.SMAR.DNS.Flags.UseTCP,
	}
	if len(c.SMAR.DNS.Nameservers) > 0 {
		o.Nameservers = c.SMAR.DNS.Nameservers
	}
	return o
}

// OpenSMAR opens the maps and builds the DNS client and the resolver, with
// the access map when an smtps section has the access flag: SMAR as smxd
// runs it.
func OpenSMAR(c *conf.Config) (*SMAR, error) { return openSMAR(c, NeedsAccessMap(c)) }

// OpenResolver is OpenSMAR without the access map: what resolving an
// address needs (smxctl map test), so that an access map that does not
// load does not stop it.
func OpenResolver(c *conf.Config) (*SMAR, error) { return openSMAR(c, false) }

// OpenMaps opens the map named only, with the maps a sequence of it
// needs, as smxd would declare them (access_map included); with only
// empty, every map. The notes say which default map files were left out.
func OpenMaps(c *conf.Config, only string) (*maps.Set, []string, error) {
	specs, notes, err := MapSpecs(c, true)
	if err != nil {
		return nil, nil, err
	}
	if only != "" {
		specs = specsFor(specs, only)
	}
	set, err := maps.Open(specs)
	if err != nil {
		return nil, nil, err
	}
	return set, notes, nil
}

// specsFor keeps the spec named name and those a sequence of it needs,
// transitively.
func specsFor(specs []maps.Spec, name string) []maps.Spec {
	byName := map[string]maps.Spec{}
	for _, s := range specs {
		byName[s.Name] = s
	}
	need := map[string]bool{}
	var mark func(string)
	mark = func(n string) {
		if need[n] {
			return
		}
		need[n] = true
		for _, m := range byName[n].Maps {
			mark(m)
		}
	}
	mark(name)
	var out []maps.Spec
	for _, s := range specs {
		if need[s.Name] {
			out = append(out, s)
		}
	}
	return out
}

func openSMAR(c *conf.Config, withAccess bool) (*SMAR, error) {
	specs, notes, err := MapSpecs(c, withAccess)
	if err != nil {
		return nil, err
	}
	set, err := maps.Open(specs)
	if err != nil {
		return nil, err
	}
	s := &SMAR{Maps: set, Notes: notes}
	for _, sp := range specs {
		if sp.File != "" && (sp.Type == maps.TypeHash || sp.Type == maps.TypePasswd) {
			s.Files = append(s.Files, sp.File)
		}
	}
	get := func(ref, file, fallback string) (maps.Map, error) {
		name := ref
		if name == "" {
			if file == "" {
				return nil, nil
			}
			name = fallback
		}
		m, ok := set.Get(name)
		if !ok {
			if ref == "" {
				return nil, nil // a default file that does not exist
			}
			return nil, fmt.Errorf("map %s is not declared", name)
		}
		return m, nil
	}
	opts := resolver.Options{
		AddressDelimiters:       c.SMAR.AddressDelimiter,
		Hostname:                c.Hostname,
		LMTPSocket:              c.SMTPC.LMTPSocket,
		LocalUserImplicitDetail: c.SMAR.LocalUserMap.Flags.ImplicitlyMatchDetail,
		MailertableFlags:        LookupFlags(c.SMAR.Mailertable.Flags),
		AliasFlags:              AliasFlags(c.SMAR.Aliases.Flags),
	}
	var errs []error
	var e error
	opts.Mailertable, e = get(c.SMAR.Mailertable.Name, c.SMAR.Mailertable.File, MapMailertable)
	errs = append(errs, e)
	opts.Aliases, e = get(c.SMAR.Aliases.Name, c.SMAR.Aliases.File, MapAliases)
	errs = append(errs, e)
	if c.SMAR.LocalUserMap.Name != "" {
		opts.LocalUsers, e = get(c.SMAR.LocalUserMap.Name, "", "")
		errs = append(errs, e)
	}
	if withAccess {
		s.Access, e = get(c.SMAR.AccessMap.Name, c.SMAR.AccessMap.File, MapAccess)
		errs = append(errs, e)
	}
	if err := errors.Join(errs...); err != nil {
		set.Close()
		return nil, err
	}
	dc, err := dnsclient.New(DNSOptions(c))
	if err != nil {
		set.Close()
		return nil, fmt.Errorf("smar DNS: %w", err)
	}
	opts.DNS = dc
	s.DNS = dc
	s.Resolver = resolver.New(opts)
	return s, nil
}

// NeedsGreylisting reports whether any smtps section has the greylisting
// or fullgreylisting flag: only then is the greylisting database opened.
func NeedsGreylisting(c *conf.Config) bool {
	for _, s := range c.SMTPS {
		if s.Flags.Greylisting || s.Flags.FullGreylisting {
			return true
		}
	}
	return false
}

// GreylistOptions maps smar's greylisting section onto the greylisting
// database's Options. The daemon adds the clock and the logger. The
// database is Pebble's, one directory at main_DB_name (relative to the
// queue directory), which holds the secondary index by expiry too:
// secondary_DB_name names nothing of its own.
func GreylistOptions(c *conf.Config) greylist.Options {
	g := c.SMAR.Greylisting
	return greylist.Options{
		Dir:          g.MainDBName,
		GreyWait:     g.GreyWait,
		GreyExpire:   g.GreyExpire,
		WhiteExpire:  g.WhiteExpire,
		WhiteTimeout: g.WhiteTimeout,
		ExpireLimit:  g.ExpireLimit,
		Netmask:      g.Netmask,
	}
}

// NewChecker builds the policy checker of one smtps section. gl is the
// greylisting database, which outlives SMAR generations (Pebble locks its
// directory); the checker uses it when the section has the greylisting
// or fullgreylisting flag, and gl may be nil when none has.
func (s *SMAR) NewChecker(c *conf.Config, srv *conf.SMTPS, gl *greylist.Greylister) (*policy.Checker, error) {
	nets, err := srv.RelayNets()
	if err != nil {
		return nil, err
	}
	o := policy.Options{
		Resolver:                  s.Resolver,
		DelayChecks:               srv.Flags.DelayChecks,
		LMTPDoesNotImplyRelaying:  srv.Flags.LMTPDoesNotImplyRelaying,
		SoftBounce:                srv.Flags.SoftBounce,
		RelayClients:              nets,
		AllowRelayingIfVerified:   srv.TLS.Flags.AllowRelayingIfVerified,
		CheckAccessMapForRelaying: srv.TLS.Flags.CheckAccessMapForRelaying,
		TrustedMechanisms:         srv.Auth.TrustedMechs,
		Protected: policy.ProtectedRecipients{
			AllowBySender:   srv.ProtectedRecipients.AllowBy.Sender,
			AllowByClientIP: srv.ProtectedRecipients.AllowBy.ClientIP,
			MatchType:       matchType(srv.ProtectedRecipients.MatchType),
		},
	}
	if srv.Flags.Greylisting || srv.Flags.FullGreylisting {
		if gl == nil {
			return nil, fmt.Errorf("%s: flags greylisting: the greylisting database is not open", Title(srv))
		}
		o.Greylist, o.FullGreylisting = gl, srv.Flags.FullGreylisting
	}
	if srv.Flags.Access && s.Access != nil {
		o.Access = s.Access
		o.DNS = s.DNS
		for _, bl := range c.SMAR.DNSBL {
			o.DNSBL = append(o.DNSBL, policy.DNSBL{Domain: bl.Domain, Tag: bl.Tag})
		}
	}
	return policy.New(o)
}

func matchType(s string) policy.MatchType {
	switch s {
	case "generic_lookup":
		return policy.MatchGeneric
	case "implicitly_match_detail":
		return policy.MatchImplicitDetail
	}
	return policy.MatchExact
}

// LookupFlags maps a flags list of lookup steps onto maps.Flags.
func LookupFlags(f conf.LookupFlags) maps.Flags {
	var out maps.Flags
	for _, x := range []struct {
		on   bool
		flag maps.Flags
	}{
		{f.FullAddress, maps.FullAddress}, {f.DetailPlus, maps.DetailPlus}, {f.DetailStar, maps.DetailStar},
		{f.Star, maps.Star}, {f.Domain, maps.DomainPart}, {f.DotSubdomain, maps.DotSubdomain}, {f.Dot, maps.Dot},
	} {
		if x.on {
			out |= x.flag
		}
	}
	return out
}

// AliasFlags maps the aliases flags onto resolver.AliasFlags.
func AliasFlags(f conf.AliasesFlags) resolver.AliasFlags {
	var out resolver.AliasFlags
	for _, x := range []struct {
		on   bool
		flag resolver.AliasFlags
	}{
		{f.LocalPart, resolver.AliasLocalPart}, {f.LocalDomains, resolver.AliasLocalDomains},
		{f.AllDomains, resolver.AliasAllDomains}, {f.ImplicitlyMatchDetail, resolver.AliasImplicitDetail},
		{f.ReplaceMacros, resolver.AliasReplaceMacros}, {f.PreserveDomain, resolver.AliasPreserveDomain},
	} {
		if x.on {
			out |= x.flag
		}
	}
	return out
}

// prefixOfKey turns a qmgr_conf net key as the seed writes it ("10",
// "10.1", "10.1.2", a whole IPv4 or IPv6 address) into a prefix.
func prefixOfKey(key string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(key); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	octets := 0
	padded := key
	for _, r := range key {
		if r == '.' {
			octets++
		}
	}
	octets++
	if octets > 3 {
		return netip.Prefix{}, fmt.Errorf("%q is neither an IP address nor an IPv4 net", key)
	}
	for i := octets; i < 4; i++ {
		padded += ".0"
	}
	a, err := netip.ParseAddr(padded)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("%q is neither an IP address nor an IPv4 net", key)
	}
	return netip.PrefixFrom(a, octets*8), nil
}
