package conf

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// render prints a tree compactly: sections as keyword[name]{...}, options
// as name=value, lists as [a|b], quoted items in "".
func render(s *Section) string {
	var b strings.Builder
	for i, e := range s.Entries {
		if i > 0 {
			b.WriteByte(' ')
		}
		switch e := e.(type) {
		case *Option:
			b.WriteString(e.Name + "=")
			items := make([]string, len(e.Value.Items))
			for j, it := range e.Value.Items {
				items[j] = it.Text
				if it.Quoted {
					items[j] = `"` + it.Text + `"`
				}
			}
			if e.Value.List {
				b.WriteString("[" + strings.Join(items, "|") + "]")
			} else {
				b.WriteString(items[0])
			}
		case *Section:
			b.WriteString(e.Keyword)
			if e.Name != "" {
				b.WriteString("(" + e.Name + ")")
			}
			b.WriteString("{" + render(e) + "}")
		}
	}
	return b.String()
}

func TestParseGrammar(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", ""},
		{"comment only", "# nothing\n   # here\n", ""},
		{"option", "a = b;", "a=b"},
		{"no spaces", "a=b;c=d;", "a=b c=d"},
		{"section", "qmgr { a = 1; }", "qmgr{a=1}"},
		{"section with semicolon", "qmgr { a = 1; };", "qmgr{a=1}"},
		{"named section", "smtps MSA { a = 1; }", "smtps(MSA){a=1}"},
		{"quoted section name", `smtps "M S A" { }`, "smtps(M S A){}"},
		{"nested sections", "a { b { c { d = 1; } } }", "a{b{c{d=1}}}"},
		{"empty section", "a { }", "a{}"},
		{"list", "flags = { a, b };", "flags=[a|b]"},
		{"list trailing comma", "flags = { a, b, };", "flags=[a|b]"},
		{"list without semicolon", "flags = { a } x = 1;", "flags=[a] x=1"},
		{"empty list", "flags = {};", "flags=[]"},
		{"single item list", "flags = {8bitmime};", "flags=[8bitmime]"},
		{"quoted", `a = "x y";`, `a="x y"`},
		{"C escapes", `a = "t\tn\nq\"b\\h\#o\101x\x41?\?";`, "a=\"t\tn\nq\"b\\h#oAxA??\""},
		{"adjacent strings across lines", "m = \"this is \"\n   \"one \"  # comment\n \"string\";", `m="this is one string"`},
		{"unquoted path", "path = /usr/libexec/smtps;", "path=/usr/libexec/smtps"},
		{"unquoted with dots and colons", "a = 127.0.0.1:25;", "a=127.0.0.1:25"},
		{"time sequence", "t = 1h 5m 12s;", "t=1h 5m 12s"},
		{"time sequence in list", "t = { 1h 5m, 2s };", "t=[1h 5m|2s]"},
		{"escaped hash in word", `a = x\#y;`, "a=x#y"},
		{"escaped semicolon in word", `a = x\;y;`, "a=x;y"},
		{"comment after option", "a = b; # c = d;\ne = f;", "a=b e=f"},
		{"hash ends a word", "a = b#c\n;", "a=b"},
		{"case preserved in tree", "QMGR { AQ_Max_Entries = 1; }", "QMGR{AQ_Max_Entries=1}"},
		{"utf-8", "a = \"héllo\"; b = ünïcode;", `a="héllo" b=ünïcode`},
		{"crlf", "a = b;\r\nc { d = e; }\r\n", "a=b c{d=e}"},
		{"negated flags", "flags = { -a, !b, ~c, not_d, dont_e, no_f };", "flags=[-a|!b|~c|not_d|dont_e|no_f]"},
		{"word glued to string", `a = x"y";`, `a=xy`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, err := Parse("t.conf", []byte(tc.in))
			require.NoError(t, err)
			require.Equal(t, tc.want, render(root))
		})
	}
}

func TestParsePositions(t *testing.T) {
	root, err := Parse("p.conf", []byte("# c\nqmgr {\n\tAQ_max_entries = 8192;\n  flags = { a,\n b };\n}\n"))
	require.NoError(t, err)
	q := root.Entries[0].(*Section)
	require.Equal(t, Pos{"p.conf", 2, 1}, q.Pos)
	require.Equal(t, Pos{"p.conf", 6, 1}, q.End)
	o := q.Entries[0].(*Option)
	require.Equal(t, Pos{"p.conf", 3, 2}, o.Pos)
	require.Equal(t, Pos{"p.conf", 3, 19}, o.Value.Pos)
	l := q.Entries[1].(*Option)
	require.Equal(t, Pos{"p.conf", 5, 2}, l.Value.Items[1].Pos)
	require.Equal(t, "p.conf:3:2", o.Pos.String())
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"missing brace", "qmgr {\n  a = 1;\n", `e.conf:3:1: expected "}" to close section qmgr opened at line 1`},
		{"seed 001 example damage", "qmgr {\n AQ_max_entries = 8192;\n\nsmtps { a = 1; }\n", `e.conf:5:1: expected "}" to close section qmgr opened at line 1`},
		{"stray brace", "a = 1;\n}\n", `e.conf:2:1: unexpected "}": no section is open`},
		{"missing semicolon", "a = 1\nb = 2;", `e.conf:2:3: expected ";" after the value of a, found "="`},
		{"missing semicolon at eof", "a = 1", `e.conf:1:6: expected ";" after the value of a, found end of file`},
		{"missing semicolon before brace", "q { a = 1 }", `e.conf:1:11: expected ";" after the value of a, found "}"`},
		{"missing value", "a = ;", `e.conf:1:5: expected a value for a, found ";"`},
		{"missing equals", "a 1;", `e.conf:1:4: expected "{" to open section a 1, found ";" (an option needs "=" after its name)`},
		{"equals only", "= 1;", `e.conf:1:1: expected an option name or a section keyword, found "="`},
		{"empty list item", "a = {,};", `e.conf:1:6: expected a value or "}" in the list of a, found ","`},
		{"double comma", "a = {x,,y};", `e.conf:1:8: expected a value or "}" in the list of a, found ","`},
		{"list missing comma", "a = {x y; z};", `e.conf:1:9: expected "," or "}" in the list of a, found ";"`},
		{"unterminated list", "a = {x, y", `e.conf:1:10: expected "," or "}" in the list of a, found end of file`},
		{"unterminated string", "a = \"abc\n\";", `e.conf:1:5: unterminated string: a quoted string must end on the line it starts (write adjacent strings to continue it)`},
		{"unknown escape", `a = "\q";`, `e.conf:1:6: unknown escape \q in string (known: \n \t \r \a \b \f \v \\ \" \' \? \ooo \xHH)`},
		{"bad hex escape", `a = "\xZ";`, `e.conf:1:6: "\x" must be followed by hex digits`},
		{"big octal escape", `a = "\777";`, `e.conf:1:6: octal escape \777 is larger than a byte`},
		{"backslash at end of line", "a = b\\\n;", `e.conf:1:7: "\" at the end of a line: a backslash escapes the next character`},
		{"invalid utf-8", "a = \xff;", `e.conf:1:5: invalid UTF-8`},
		{"section name without brace", "smtps MTA = 1;", `e.conf:1:11: expected "{" to open section smtps MTA, found "=" (an option needs "=" after its name)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("e.conf", []byte(tc.in))
			require.Error(t, err)
			require.Equal(t, tc.want, err.Error())
		})
	}
}

func TestParseDepthLimit(t *testing.T) {
	deep := strings.Repeat("a { ", 100) + strings.Repeat("} ", 100)
	_, err := Parse("d.conf", []byte(deep))
	require.ErrorContains(t, err, fmt.Sprintf("sections nested deeper than %d", maxDepth))
}

func TestValues(t *testing.T) {
	num := func(s string) any {
		v, err := parseNumber(s)
		if err != nil {
			return err.Error()
		}
		return v
	}
	require.Equal(t, int64(0), num("0"))
	require.Equal(t, int64(8192), num("8192"))
	require.Equal(t, int64(31), num("0x1F"))
	require.Equal(t, int64(31), num("0X1f"))
	require.Equal(t, int64(15), num("017"))
	require.Equal(t, int64(4294967040), num("0xFFFFFF00"))
	require.Equal(t, `expected an octal number (it starts with 0), found "08"`, num("08"))
	require.Equal(t, `expected a hex number, found "0xG"`, num("0xG"))
	require.Equal(t, `expected a number, found "12a"`, num("12a"))
	require.Equal(t, `expected a number, found "-1"`, num("-1"))
	require.Equal(t, `number "99999999999999999999" is too large`, num("99999999999999999999"))

	for _, s := range []string{"1", "true", "TRUE", "on", "On"} {
		v, err := parseBool(s)
		require.NoError(t, err)
		require.True(t, v, s)
	}
	for _, s := range []string{"0", "false", "off", "OFF", "False"} {
		v, err := parseBool(s)
		require.NoError(t, err)
		require.False(t, v, s)
	}
	_, err := parseBool("yes")
	require.EqualError(t, err, `expected a boolean (1, true, on or 0, false, off), found "yes"`)
}

func TestDurations(t *testing.T) {
	const s, us = 1e9, 1e3
	for _, tc := range []struct {
		in   string
		base float64
		want float64 // seconds
	}{
		{"0", s, 0},
		{"6", s, 6},
		{"90s", s, 90},
		{"5m", s, 300},
		{"5m3s", s, 303},
		{"1h 5m 12s", s, 3912},
		{"1h5m12s", s, 3912},
		{"2d", s, 172800},
		{"1w", s, 604800},
		{"1h 30", s, 3630},
		{"5 m", s, 300},
		{"5M", s, 300},
		{"0x10", s, 16},
		{"010", s, 8},
		{"1000", us, 0.001},
		{"1s", us, 1},
		{"250ms", s, 0.25},
		{"1500us", s, 0.0015},
		{"1500µs", s, 0.0015},
	} {
		d, err := parseDuration(tc.in, time.Duration(tc.base))
		require.NoError(t, err, tc.in)
		require.InDelta(t, tc.want, d.Seconds(), 1e-9, tc.in)
	}
	for in, msg := range map[string]string{
		"5x":        `unknown time unit "x" in "5x" (want w, d, h, m, s, ms or us)`,
		"h":         `expected a time such as 30s, 5m, 1h 30m or 5d, found "h"`,
		"":          `expected a time such as 30s, 5m, 1h 30m or 5d, found ""`,
		"1h-5m":     `expected a time such as 30s, 5m, 1h 30m or 5d, found "1h-5m"`,
		"5 minutes": `unknown time unit "minutes" in "5 minutes" (want w, d, h, m, s, ms or us)`,
		"99999999w": `time "99999999w" is too large`,
	} {
		_, err := parseDuration(in, time.Second)
		require.EqualError(t, err, msg, in)
	}
}

func TestSizes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		base int64
		want Size
	}{
		{"0", 1, 0},
		{"1177", 1, 1177},
		{"1177B", 1, 1177},
		{"10KB", 1, 10240},
		{"10kb", 1, 10240},
		{"10 MB", 1, 10 << 20},
		{"1GB", 1, 1 << 30},
		{"1MB 512KB", 1, 1<<20 + 512<<10},
		{"10240", 1024, 10 << 20},
		{"10MB", 1024, 10 << 20},
		{"0x400", 1, 1024},
	} {
		v, err := parseSize(tc.in, tc.base)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, v, tc.in)
	}
	for in, msg := range map[string]string{
		"10K":          `unknown size unit "K" in "10K" (want B, KB, MB or GB)`,
		"10TB":         `unknown size unit "TB" in "10TB" (want B, KB, MB or GB)`,
		"MB":           `expected a size such as 512KB, 10MB or 1GB, found "MB"`,
		"9999999999GB": `size "9999999999GB" is too large`,
	} {
		_, err := parseSize(in, 1)
		require.EqualError(t, err, msg, in)
	}
}

func TestFormatRoundTrip(t *testing.T) {
	for _, d := range []time.Duration{0, time.Second, 303 * time.Second, 5 * 24 * time.Hour, 36 * 24 * time.Hour,
		14 * 24 * time.Hour, 1500 * time.Microsecond, time.Millisecond, 3912 * time.Second} {
		back, err := parseDuration(formatDuration(d), time.Second)
		require.NoError(t, err)
		require.Equal(t, d, back, formatDuration(d))
	}
	require.Equal(t, "36d", formatDuration(36*24*time.Hour))
	require.Equal(t, "2w", formatDuration(14*24*time.Hour))
	require.Equal(t, "1h 5m 12s", formatDuration(3912*time.Second))
	for _, n := range []Size{0, 1, 1023, 1024, 10 << 20, 1<<20 + 1, 3 << 30} {
		back, err := parseSize(formatSize(n), 1)
		require.NoError(t, err)
		require.Equal(t, n, back, formatSize(n))
	}
	for _, s := range []string{"", "plain", "with space", `q"uote`, `back\slash`, "tab\there", "nl\nx", "\x01\x7f", "héllo", "bad\xffutf8", "#hash", "a;b{c}=d,e"} {
		root, err := Parse("q", []byte("a = "+quote(s)+";"))
		require.NoError(t, err, quote(s))
		require.Equal(t, s, root.Entries[0].(*Option).Value.Items[0].Text)
		root, err = Parse("q", []byte("a "+quoteWord(s)+" { }"))
		require.NoError(t, err, quoteWord(s))
		require.Equal(t, s, root.Entries[0].(*Section).Name)
	}
}
