package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/smx-mta/smx/cmd/smxd/conf"
	"github.com/smx-mta/smx/smtp/maps"
	"github.com/smx-mta/smx/smtp/policy"
	"github.com/smx-mta/smx/smtp/resolver"
	"github.com/smx-mta/smx/smtp/resolver/dnsclient"
)

// The names under which `smxctl map lookup` finds SMAR's own maps when
// they are given as files rather than declared maps.
const (
	mapAccess      = "access_map"
	mapAliases     = "aliases"
	mapMailertable = "mailertable"
)

func newMapCmd(flags *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "map",
		Short: "Look keys up in SMAR's maps and test address resolution",
	}
	var exact bool
	var tag string
	lookup := &cobra.Command{
		Use:   "lookup MAP KEY",
		Short: "Look KEY up in MAP, showing every key tried",
		Long: "MAP is a map declared in smx.conf, or access_map, aliases or mailertable for the maps smar names " +
			"by file. KEY is looked up with the seed's lookup order for what it is: an IP address by nets " +
			"(A.B.C.D, A.B.C, A.B, A), an address with @ by the address order (user+detail@sub, user++@sub, " +
			"user+*@sub, user*@sub, user@sub, @sub for each parent domain, then the local part forms), anything " +
			"else as it is. --tag puts an access map tag (to:, from:, cltaddr:, ...) in front of every key; " +
			"--exact looks KEY up alone.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadConfig(cmd, flags)
			if err != nil {
				return err
			}
			set, err := openMaps(c, args[0])
			if err != nil {
				return err
			}
			defer set.Close()
			m, ok := set.Get(args[0])
			if !ok {
				return fmt.Errorf("map %s is not declared (declared: %s)", args[0], strings.Join(set.Names(), ", "))
			}
			return runLookup(cmd.Context(), cmd.OutOrStdout(), m, c.SMAR.AddressDelimiter, tag, args[1], exact)
		},
	}
	lookup.Flags().BoolVar(&exact, "exact", false, "look the key up as it is, without a lookup order")
	lookup.Flags().StringVar(&tag, "tag", "", "access map tag to put in front of every key, e.g. to:")
	cmd.AddCommand(lookup)

	cmd.AddCommand(&cobra.Command{
		Use:   "test ADDRESS",
		Short: "Resolve ADDRESS as SMAR would, showing every map key and DNS answer (like sendmail -bt)",
		Long: "Test runs the resolver on ADDRESS: mailertable, aliases (with expansion), local users and DNS, " +
			"printing each step, then the result: the delivery agent, port, LMTP socket, hosts with addresses " +
			"and destination; or the expansion and its owner; or the reply a failure gives. DNS questions go " +
			"to the nameservers of the configuration.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadConfig(cmd, flags)
			if err != nil {
				return err
			}
			r, closer, err := newResolverFromConfig(c)
			if err != nil {
				return err
			}
			defer closer()
			out := cmd.OutOrStdout()
			res := r.ResolveTrace(cmd.Context(), args[0], func(s string) { fmt.Fprintln(out, "  "+s) })
			printResult(out, res)
			return nil
		},
	})
	return cmd
}

// runLookup looks key up in m with the lookup order that fits it.
func runLookup(ctx context.Context, out io.Writer, m maps.Map, delimiters, tag, key string, exact bool) error {
	var keys []maps.Key
	switch ip, err := netip.ParseAddr(key); {
	case exact:
		keys = maps.Keys(key)
	case err == nil:
		keys = maps.Keys(maps.IPKeys(ip)...)
	case strings.Contains(key, "@"):
		a, err := maps.ParseAddress(key)
		if err != nil {
			return err
		}
		keys = maps.Order{Flags: maps.GenericAddress | maps.LocalPart, Delimiters: delimiters}.AddressKeys(a)
	default:
		keys = maps.Keys(key)
	}
	match, found, err := maps.Find(ctx, maps.View(m), tag, keys, func(s maps.Step) {
		switch {
		case s.Err != nil:
			fmt.Fprintf(out, "  %s -> error: %v\n", s.Key, s.Err)
		case s.Found:
			fmt.Fprintf(out, "  %s -> %s\n", s.Key, s.Value)
		default:
			fmt.Fprintf(out, "  %s -> not found\n", s.Key)
		}
	})
	if err != nil {
		return err
	}
	if !found {
		fmt.Fprintln(out, "not found")
		return nil
	}
	fmt.Fprintf(out, "found %s%s: %s\n", tag, match.Key.Key, match.Value)
	return nil
}

func printResult(out io.Writer, r resolver.Result) {
	fmt.Fprintf(out, "address: %s\n", r.Address)
	switch {
	case r.Failure != nil:
		kind := "permanent"
		if r.Failure.Temporary() {
			kind = "temporary"
		}
		fmt.Fprintf(out, "%s failure: %s\n", kind, r.Failure.Error())
	case len(r.Expansion) > 0:
		fmt.Fprintf(out, "expands to: %s\n", strings.Join(r.Expansion, " "))
		if r.Owner != "" {
			fmt.Fprintf(out, "owner (envelope sender): %s\n", r.Owner)
		}
	default:
		fmt.Fprintf(out, "mailer: %s\n", r.Mailer)
		if r.Local {
			fmt.Fprintln(out, "local: yes")
		}
		if r.Port != 0 {
			fmt.Fprintf(out, "port: %d\n", r.Port)
		}
		if r.Socket != "" {
			fmt.Fprintf(out, "socket: %s\n", r.Socket)
		}
		for _, h := range r.Hops {
			addrs := make([]string, len(h.Addrs))
			for i, a := range h.Addrs {
				addrs[i] = a.String()
			}
			fmt.Fprintf(out, "host: %s preference %d: %s\n", h.Host, h.Preference, strings.Join(addrs, " "))
		}
		fmt.Fprintf(out, "destination: %s\n", r.Destination)
	}
}

// mapSpecs turns the map declarations and smar's file-named maps into
// Specs. only, when not empty, limits them to that map and what it needs.
func mapSpecs(c *conf.Config, only string) ([]maps.Spec, error) {
	aliasesName := c.SMAR.Aliases.Name
	var specs []maps.Spec
	for _, m := range c.SMAR.Maps {
		spec := maps.Spec{Name: m.Name, Type: m.Type, File: m.File, MapName: m.MapName,
			Path: m.Path, Address: m.Address, Port: m.Port, Maps: m.Maps, Timeout: 5 * time.Second}
		if m.Type == "cdb" {
			return nil, fmt.Errorf("map %s: type cdb (tinycdb) is not supported; use type hash", m.Name)
		}
		if m.Name == aliasesName {
			spec.Format = maps.FormatAliases
		}
		specs = append(specs, spec)
	}
	var dnsblTags []string
	for _, bl := range c.SMAR.DNSBL {
		dnsblTags = append(dnsblTags, bl.Tag)
	}
	validate := map[string]func(map[string]string) error{
		mapMailertable: resolver.CheckMailertable,
		mapAccess:      policy.CheckAccessMap(dnsblTags),
	}
	files := []struct {
		name, file, ref string
		format          maps.Format
	}{
		{mapMailertable, c.SMAR.Mailertable.File, c.SMAR.Mailertable.Name, maps.FormatPlain},
		{mapAliases, c.SMAR.Aliases.File, c.SMAR.Aliases.Name, maps.FormatAliases},
		{mapAccess, c.SMAR.AccessMap.File, c.SMAR.AccessMap.Name, maps.FormatPlain},
	}
	// A declared map used as mailertable or access map is checked too.
	for i := range specs {
		switch specs[i].Name {
		case c.SMAR.Mailertable.Name:
			specs[i].Validate = validate[mapMailertable]
		case c.SMAR.AccessMap.Name:
			specs[i].Validate = validate[mapAccess]
		}
	}
	for _, f := range files {
		if f.ref != "" || f.file == "" {
			continue
		}
		if only != "" && only != f.name {
			continue
		}
		specs = append(specs, maps.Spec{Name: f.name, Type: maps.TypeHash, File: f.file, Format: f.format,
			Validate: validate[f.name]})
	}
	if only == "" {
		return specs, nil
	}
	// Keep only the map asked for and the maps a sequence needs.
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
	mark(only)
	var out []maps.Spec
	for _, s := range specs {
		if need[s.Name] {
			out = append(out, s)
		}
	}
	return out, nil
}

func openMaps(c *conf.Config, only string) (*maps.Set, error) {
	specs, err := mapSpecs(c, only)
	if err != nil {
		return nil, err
	}
	return maps.Open(specs)
}

// newResolverFromConfig builds SMAR's resolver from the configuration the
// way smxd does: declared maps, the mailertable, aliases and
// local_user_map, and DNS.
func newResolverFromConfig(c *conf.Config) (*resolver.Resolver, func(), error) {
	specs, err := mapSpecs(c, "")
	if err != nil {
		return nil, nil, err
	}
	// The access map is not needed to resolve; leave it out so that a
	// missing access.db does not stop the test.
	specs = dropSpec(specs, mapAccess)
	set, err := maps.Open(specs)
	if err != nil {
		return nil, nil, err
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
			return nil, fmt.Errorf("map %s is not declared", name)
		}
		return m, nil
	}
	opts := resolver.Options{
		AddressDelimiters:       c.SMAR.AddressDelimiter,
		Hostname:                c.Hostname,
		LMTPSocket:              c.SMTPC.LMTPSocket,
		LocalUserImplicitDetail: c.SMAR.LocalUserMap.Flags.ImplicitlyMatchDetail,
		MailertableFlags:        lookupFlags(c.SMAR.Mailertable.Flags),
		AliasFlags:              aliasFlags(c.SMAR.Aliases.Flags),
	}
	var errs []error
	var e error
	opts.Mailertable, e = get(c.SMAR.Mailertable.Name, c.SMAR.Mailertable.File, mapMailertable)
	errs = append(errs, e)
	opts.Aliases, e = get(c.SMAR.Aliases.Name, c.SMAR.Aliases.File, mapAliases)
	errs = append(errs, e)
	if c.SMAR.LocalUserMap.Name != "" {
		opts.LocalUsers, e = get(c.SMAR.LocalUserMap.Name, "", "")
		errs = append(errs, e)
	}
	if err := errors.Join(errs...); err != nil {
		set.Close()
		return nil, nil, err
	}
	dnsOpts := dnsclient.Options{
		Timeout:  c.SMAR.DNS.Timeout,
		Attempts: c.SMAR.DNS.Retries + 1,
		UseTCP:   c.SMAR.DNS.Flags.UseTCP,
	}
	if len(c.SMAR.DNS.Nameservers) > 0 {
		dnsOpts.Nameservers = c.SMAR.DNS.Nameservers
	}
	dc, err := dnsclient.New(dnsOpts)
	if err != nil {
		set.Close()
		return nil, nil, err
	}
	opts.DNS = dc
	return resolver.New(opts), func() { set.Close() }, nil
}

func dropSpec(specs []maps.Spec, name string) []maps.Spec {
	out := specs[:0]
	for _, s := range specs {
		if s.Name != name {
			out = append(out, s)
		}
	}
	return out
}

func lookupFlags(f conf.LookupFlags) maps.Flags {
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

func aliasFlags(f conf.AliasesFlags) resolver.AliasFlags {
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
