package conf

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse feeds arbitrary text through every layer: parsing must never
// panic or hang, and whatever loads must survive a dump and reload
// unchanged.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.conf")
	files = append(files, "../smx.conf")
	for _, name := range files {
		if src, err := os.ReadFile(name); err == nil {
			f.Add(src)
		}
	}
	f.Add(DefaultSource)
	for _, s := range []string{
		"", "a = b;", "qmgr { AQ_max_entries = 0x10; }", `s = "a\tb" "c";`, "x = { a, b, };",
		"smtps MTA { listen_socket { port = 25; } flags = { -8bitmime, no_access }; }",
		"qmgr { queue_return_timeout = 1w 2d 3h; IBDB { max_commit_delay = 250; } }",
		"smtps { max_message_size = 1MB 512KB; }", "# \\# comment\n", "a = x\\#y;", "{", "}", "a = {", `a = "\x`,
		"map m { type = sequence; maps = { m }; }", "smar { dnsbl { domain = a; tag = b; } dnsbl { } }",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		root, err := Parse("f.conf", src)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("Parse returned %T, want *Error", err)
			}
			return
		}
		c, err := Decode(root)
		if err != nil {
			return
		}
		c.Dir = "/etc/smx"
		if err := c.Resolve(testEnv); err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			return
		}
		var out bytes.Buffer
		if err := Dump(&out, c); err != nil {
			t.Fatal(err)
		}
		again, err := LoadSource("dump.conf", out.Bytes(), "/elsewhere", testEnv)
		if err != nil {
			t.Fatalf("the dump does not load: %v\n%s", err, out.String())
		}
		if want, got := comparable(c), comparable(again); !reflect.DeepEqual(want, got) {
			t.Fatalf("the dump loads differently:\n%s", out.String())
		}
	})
}
