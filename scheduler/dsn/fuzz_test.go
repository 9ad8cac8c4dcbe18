package dsn

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzWrite feeds untrusted text (the original message and the remote
// server's reply) to Write: the DSN must always parse back with the
// recipients in place.
func FuzzWrite(f *testing.F) {
	f.Add(original, "550 5.1.1 user unknown", true)
	f.Add("no header at all", "550 x\r\nBcc: y", false)
	f.Add("Subject: a\n\n--S0000000000000001200/mx.smx.test--\n", "--S0000000000000001200/mx.smx.test", true)
	f.Add("\xff\xfe: \x00\r\n\r\n", "\xff", true)
	f.Add(original, "550 5.1.1 Benutzer unbekannt: jörg", false)
	f.Fuzz(func(t *testing.T, orig, diag string, full bool) {
		r := failedReport()
		r.Recipients[0].Diagnostic = diag
		r.Return = ReturnHeaders
		if full {
			r.Return = ReturnFull
		}
		var buf bytes.Buffer
		eight, err := Write(&buf, r, strings.NewReader(orig))
		if err != nil {
			t.Fatal(err)
		}
		if isASCII(orig) && (eight || !isASCII(buf.String())) {
			t.Fatalf("a report on ASCII addresses and an ASCII original has 8-bit content (reported: %v)", eight)
		}
		p := parse(t, buf.Bytes())
		if len(p.perRcpt) != 2 || p.perRcpt[0].Get("Action") != "failed" {
			t.Fatalf("recipients lost: %v", p.perRcpt)
		}
	})
}
