package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"

	"github.com/smx-mta/smx/cmd/smxd/wire"
	"github.com/smx-mta/smx/smtp/maps"
	"github.com/smx-mta/smx/smtp/policy"
	"github.com/smx-mta/smx/smtp/resolver"
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
			"user+*@sub, user*@sub, user@sub, @sub for each parent domain, then the local part forms), a domain " +
			"by the domain order (sub2.sub1.tld, .sub1.tld, .tld, .; with --tag cltname: as the client name " +
			"check does: with the trailing dot DNS names carry, without the \".\" step), anything else as it is. " +
			"--tag puts an access map tag (to:, from:, cltaddr:, cltname:, ...) in front of every key; " +
			"--exact looks KEY up alone.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadConfig(cmd, flags)
			if err != nil {
				return err
			}
			set, notes, err := wire.OpenMaps(c, args[0])
			if err != nil {
				return err
			}
			defer set.Close()
			m, ok := set.Get(args[0])
			if !ok {
				for _, n := range notes {
					fmt.Fprintln(cmd.ErrOrStderr(), n)
				}
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
			smar, err := wire.OpenResolver(c)
			if err != nil {
				return err
			}
			defer smar.Close()
			out := cmd.OutOrStdout()
			res := smar.Resolver.ResolveTrace(cmd.Context(), args[0], func(s string) { fmt.Fprintln(out, "  "+s) })
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
	case strings.EqualFold(tag, policy.TagClientName):
		// A client name from DNS carries its trailing dot, and so must
		// cltname: entries (seed 002, "Access Map"); no "." step: the
		// order smxd's connect check uses.
		keys = maps.Keys(maps.DomainKeys(strings.TrimSuffix(key, ".")+".", true, false)...)
	case isDomain(key):
		// The seed's domain order: sub2.sub1.tld, .sub1.tld, .tld, ".".
		keys = maps.Keys(maps.DomainKeys(key, true, true)...)
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

// isDomain reports whether key is a domain name of more than one label or
// an address literal, which lookup tries in the seed's domain order; a
// single word (an alias, a user) is looked up as it is.
func isDomain(key string) bool {
	if strings.HasPrefix(key, "[") && strings.HasSuffix(key, "]") {
		return true
	}
	return strings.Contains(strings.Trim(key, "."), ".") && !strings.ContainsAny(key, " \t")
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
