package client

import (
	"bufio"
	"strings"
	"testing"
)

// FuzzReadReply feeds arbitrary server output to the reply reader: it must
// return a reply or an error, never panic, and never a reply that breaks
// its own invariants.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"250 ok\r\n",
		"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n",
		"550 5.1.1 <a@b>: unknown\r\n",
		"550-5.1.1 first\r\n550 5.1.1 second\r\n",
		"220\r\n",
		"421 4.3.2 bye\n",
		"250-a\r\n251 b\r\n",
		"99 x\r\n",
		"2500 x\r\n",
		"250_x\r\n",
		"250 2.0.0\r\n",
		"451 5.0.0 class mismatch\r\n",
		strings.Repeat("250-x\r\n", 300) + "250 y\r\n",
		"250 " + strings.Repeat("x", 5000) + "\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		rep, err := readReply(bufio.NewReaderSize(strings.NewReader(in), 64))
		if err != nil {
			return
		}
		if rep.Code < 200 || rep.Code > 599 {
			t.Fatalf("code %d out of range", rep.Code)
		}
		if rep.Enhanced != "" && (!validEnhanced(rep.Enhanced) || int(rep.Enhanced[0]-'0') != rep.Class()) {
			t.Fatalf("bad enhanced code %q for %d", rep.Enhanced, rep.Code)
		}
		if len(rep.Lines) == 0 || len(rep.Lines) > maxReplyLines {
			t.Fatalf("%d lines", len(rep.Lines))
		}
		for _, l := range rep.Lines {
			if len(l) > maxReplyLine {
				t.Fatalf("line of %d bytes", len(l))
			}
		}
		ext := parseExtensions(rep)
		ext.Size()
		_ = serverName(rep)
		_ = rep.String()
	})
}
