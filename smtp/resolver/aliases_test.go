package resolver

import (
	"testing"

	"github.com/smx-mta/smx/smtp/maps"
	"github.com/stretchr/testify/require"
)

func TestSplitAliasRHS(t *testing.T) {
	got, err := splitAliasRHS(` <a@b.example>  plain <"x y"@c.example>	<>`)
	require.NoError(t, err)
	require.Equal(t, []string{"<a@b.example>", "plain", `<"x y"@c.example>`, "<>"}, got)
	for _, bad := range []string{"", "   ", "<a@b", "a@b>", `"open`} {
		_, err := splitAliasRHS(bad)
		require.Error(t, err, bad)
	}
}

func TestReplaceMacros(t *testing.T) {
	v := macrosFor(maps.Address{Local: "alias+detail", Domain: "host2.domain"}, "+", maps.Key{Subdomain: "host2"})
	got, err := replaceMacros("${user}|${detail}|${delimiter}|${extension}|${domain}|${subdomain}|${tag}", v)
	require.NoError(t, err)
	require.Equal(t, "alias|detail|+|+detail|host2.domain|host2|", got)
	_, err = replaceMacros("${user", v)
	require.ErrorContains(t, err, "unterminated macro")
	_, err = replaceMacros("${nope}", v)
	require.ErrorContains(t, err, "unknown macro ${nope}")
}

// FuzzAliasRHS covers the parsing of alias right-hand sides read from the
// aliases file: splitting, macros and the address parser.
func FuzzAliasRHS(f *testing.F) {
	for _, s := range []string{"<user1@my.dom> <user2@my.dom> <>", "localuser", "user${extension}@${subdomain}.domain",
		`<"a b"@x> <c@d>`, "local:", "<a@b", "${"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rhs string) {
		words, err := splitAliasRHS(rhs)
		if err != nil {
			return
		}
		v := macrosFor(maps.Address{Local: "u+d", Domain: "x.example"}, "+", maps.Key{})
		for _, w := range words {
			if w == "" || isBlank(w[0]) || isBlank(w[len(w)-1]) {
				t.Fatalf("%q: bad word %q", rhs, w)
			}
			if r, err := replaceMacros(w, v); err == nil {
				maps.ParseAddress(r)
			}
		}
	})
}
