package maps

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func keyStrings(keys []Key) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.Key
	}
	return out
}

func TestDomainKeys(t *testing.T) {
	require.Equal(t, []string{"sub2.sub1.tld", ".sub1.tld", ".tld", "."},
		DomainKeys("Sub2.Sub1.TLD", true, true))
	require.Equal(t, []string{"sub2.sub1.tld", ".sub1.tld", ".tld"},
		DomainKeys("sub2.sub1.tld", true, false))
	require.Equal(t, []string{"sub2.sub1.tld"}, DomainKeys("sub2.sub1.tld", false, false))
	// A trailing dot (client names from DNS) stays part of every key.
	require.Equal(t, []string{"host.example.", ".example.", "."}, DomainKeys("host.example.", true, true))
	// Address literals have no parents.
	require.Equal(t, []string{"[192.0.2.1]", "."}, DomainKeys("[192.0.2.1]", true, true))
}

func TestIPKeys(t *testing.T) {
	for _, tc := range []struct {
		ip   string
		want []string
	}{
		{"192.0.2.17", []string{"192.0.2.17", "192.0.2", "192.0", "192"}},
		{"::ffff:10.1.2.3", []string{"10.1.2.3", "10.1.2", "10.1", "10"}},
		{"2001:db8::1", []string{"2001:db8::1", "2001:db8:0:0:0:0:0:1", "2001:db8:0:0:0:0:0",
			"2001:db8:0:0:0:0", "2001:db8:0:0:0", "2001:db8:0:0", "2001:db8:0", "2001:db8", "2001"}},
		{"2001:db8:1:2:3:4:5:6", []string{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2:3:4:5",
			"2001:db8:1:2:3:4", "2001:db8:1:2:3", "2001:db8:1:2", "2001:db8:1", "2001:db8", "2001"}},
	} {
		require.Equal(t, tc.want, IPKeys(netip.MustParseAddr(tc.ip)), tc.ip)
	}
}

// TestAddressKeys checks the seed's address lookup order (seed 001 and 002,
// "Lookup Orders in Maps") step by step.
func TestAddressKeys(t *testing.T) {
	all := GenericAddress | LocalPart
	for _, tc := range []struct {
		name  string
		order Order
		addr  string
		want  string
	}{
		{"detail", Order{Flags: all}, "user+detail@sub2.sub1.tld",
			"user+detail@sub2.sub1.tld user++@sub2.sub1.tld user+*@sub2.sub1.tld user*@sub2.sub1.tld @sub2.sub1.tld " +
				"user+detail@.sub1.tld user++@.sub1.tld user+*@.sub1.tld user*@.sub1.tld @.sub1.tld " +
				"user+detail@.tld user++@.tld user+*@.tld user*@.tld @.tld " +
				"user+detail user++ user+* user*"},
		{"empty detail: no ++", Order{Flags: all}, "user+@a.tld",
			"user+@a.tld user+*@a.tld user*@a.tld @a.tld user+@.tld user+*@.tld user*@.tld @.tld user+ user+* user*"},
		{"no detail", Order{Flags: all}, "user@a.tld",
			"user*@a.tld user@a.tld @a.tld user*@.tld user@.tld @.tld user* user"},
		{"implicit detail", Order{Flags: all | ImplicitDetail}, "User+X@A.tld",
			"user+x@a.tld user++@a.tld user+*@a.tld user*@a.tld user@a.tld @a.tld " +
				"user+x@.tld user++@.tld user+*@.tld user*@.tld user@.tld @.tld " +
				"user+x user++ user+* user* user"},
		{"local parts only", Order{Flags: LocalParts}, "user+x@a.tld", "user+x user++ user+* user*"},
		{"no subdomains", Order{Flags: FullAddress | DomainPart}, "user@a.b.tld", "user@a.b.tld @a.b.tld"},
		{"mailertable", Order{Flags: MailertableDefault, NoAt: true}, "user@a.b.tld", "a.b.tld .b.tld .tld ."},
		{"delimiter list, first found wins", Order{Flags: FullAddress | DetailPlus, Delimiters: "/_-"}, "user/ext-list@d.tld",
			"user/ext-list@d.tld user/+@d.tld"},
		{"delimiter list, other order", Order{Flags: FullAddress | DetailPlus, Delimiters: "/_-"}, "user-ext_list@d.tld",
			"user-ext_list@d.tld user-+@d.tld"},
		{"plus is not a delimiter here", Order{Flags: FullAddress, Delimiters: "-"}, "a+b@d.tld", "a+b@d.tld"},
		{"unqualified", Order{Flags: all}, "user+d", "user+d user++ user+* user*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseAddress(tc.addr)
			require.NoError(t, err)
			require.Equal(t, strings.Fields(tc.want), keyStrings(tc.order.AddressKeys(a)))
		})
	}
}

func TestAddressKeysSubdomainMacro(t *testing.T) {
	a, err := ParseAddress("alias+d@host.domain")
	require.NoError(t, err)
	m := NewStatic("aliases", map[string]string{"alias*@.domain": "user${extension}@${subdomain}.domain"})
	match, found, err := Find(context.Background(), m, "", Order{Flags: GenericAddress}.AddressKeys(a), nil)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "alias*@.domain", match.Key.Key)
	require.Equal(t, "host", match.Key.Subdomain)
}

// TestFindMatching runs whole lookups against a map, including the seed's
// "user*" rule: it matches user and user+detail, never user1.
func TestFindMatching(t *testing.T) {
	m := NewStatic("m", map[string]string{
		"user*@sub.tld": "star",
		"other++@a.tld": "plus",
		"plain@a.tld":   "plain",
		"@.tld":         "dom",
		"bob":           "local",
		"carol+*@x.tld": "detailstar",
		"to:dave@x.tld": "tagged",
	})
	ctx := context.Background()
	order := Order{Flags: GenericAddress | LocalPart}
	for _, tc := range []struct {
		addr, tag, want string
	}{
		{"user@sub.tld", "", "star"},
		{"user+x@sub.tld", "", "star"},
		{"user1@sub.tld", "", "dom"},
		{"other+x@a.tld", "", "plus"},
		{"other+@a.tld", "", "dom"},
		{"plain+x@a.tld", "", "dom"},
		{"plain@a.tld", "", "plain"},
		{"bob@elsewhere.example", "", "local"},
		{"carol+@x.tld", "", "detailstar"},
		{"carol@x.tld", "", "dom"},
		{"dave@x.tld", "to:", "tagged"},
		{"nobody@nowhere.example", "", ""},
	} {
		a, err := ParseAddress(tc.addr)
		require.NoError(t, err)
		var tried []string
		match, found, err := Find(ctx, m, tc.tag, order.AddressKeys(a), func(s Step) { tried = append(tried, s.Key) })
		require.NoError(t, err)
		require.Equal(t, tc.want != "", found, "%s tried %v", tc.addr, tried)
		require.Equal(t, tc.want, match.Value, tc.addr)
	}
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"<user@example.com>", "user+detail@sub.example.com", "<>", `"quoted user"@x.y`,
		"@a,@b:user@c", "user@[192.0.2.1]", "user@[IPv6:2001:db8::1]", "bad..dots@x", "<unbalanced", "üser@exämple.de"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			return
		}
		// A parsed address renders to something that parses back to it.
		b, err := ParseAddress(a.String())
		if err != nil {
			t.Fatalf("%q parsed to %+v whose String %q does not parse: %v", s, a, a.String(), err)
		}
		if a != b {
			t.Fatalf("%q: round trip %+v -> %q -> %+v", s, a, a.String(), b)
		}
		order := Order{Flags: GenericAddress | LocalPart | Dot, Delimiters: "+-"}
		for _, k := range order.AddressKeys(a) {
			if k.Key == "" {
				t.Fatalf("%q: empty key", s)
			}
		}
	})
}

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct {
		in            string
		local, domain string
		err           bool
	}{
		{"<user@example.com>", "user", "example.com", false},
		{"user@example.com", "user", "example.com", false},
		{"<>", "", "", false},
		{"", "", "", false},
		{"<@a.example,@b.example:user@c.example>", "user", "c.example", false},
		{`"john doe"@example.com`, "john doe", "example.com", false},
		{`"a\"b"@x.example`, `a"b`, "x.example", false},
		{"user@[192.0.2.1]", "user", "[192.0.2.1]", false},
		{"localuser", "localuser", "", false},
		{"user@", "", "", true},
		{"@example.com", "", "", true},
		{"a..b@example.com", "", "", true},
		{"a b@example.com", "", "", true},
		{"<user@example.com", "", "", true},
		{"user@exa mple.com", "", "", true},
		{"user@-bad.example", "", "", true},
		{strings.Repeat("x", 65) + "@example.com", "", "", true},
		{`"unterminated@example.com`, "", "", true},
	} {
		a, err := ParseAddress(tc.in)
		if tc.err {
			require.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.local, a.Local, tc.in)
		require.Equal(t, tc.domain, a.Domain, tc.in)
	}
}
