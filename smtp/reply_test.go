package smtp

import (
	"bufio"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestReplyFormat(t *testing.T) {
	r := Reply{Code: 250, Enhanced: E(2, 0, 0), Lines: []string{"first", "second\r\nline"}}
	if got := string(r.Append(nil)); got != "250-2.0.0 first\r\n250 2.0.0 second  line\r\n" {
		t.Errorf("Append = %q", got)
	}
	if got := string(NewReply(354, EnhancedCode{}, "go ahead").Append(nil)); got != "354 go ahead\r\n" {
		t.Errorf("Append = %q", got)
	}
	if s := Errorf(451, E(4, 3, 0), "try %s", "later").Error(); s != "smtp: 451 4.3.0 try later" {
		t.Errorf("Error() = %q", s)
	}
}

func TestReadReply(t *testing.T) {
	in := "250-mx.example greets you\r\n250-PIPELINING\r\n250 SIZE 100\r\n" +
		"550 5.7.1 no, not now, 99% usage\r\n" +
		"250-2.1.5 a\r\n250 2.1.5 b\r\n" +
		"421\r\n" +
		"250-x\r\n251 y\r\n"
	lr := NewLineReader(bufio.NewReader(strings.NewReader(in)), 0)
	want := []Reply{
		{Code: 250, Lines: []string{"mx.example greets you", "PIPELINING", "SIZE 100"}},
		{Code: 550, Enhanced: E(5, 7, 1), Lines: []string{"no, not now, 99% usage"}},
		{Code: 250, Enhanced: E(2, 1, 5), Lines: []string{"a", "b"}},
		{Code: 421, Lines: []string{""}},
	}
	for _, w := range want {
		r, err := ReadReply(lr)
		if err != nil || r.String() != w.String() || len(r.Lines) != len(w.Lines) {
			t.Fatalf("ReadReply = %+v, %v; want %+v", r, err, w)
		}
	}
	if _, err := ReadReply(lr); err == nil {
		t.Error("code change within a reply accepted")
	}
	for _, bad := range []string{"25\r\n", "2x0 ok\r\n", "250_ok\r\n", "199 x\r\n"} {
		if _, err := ReadReply(NewLineReader(bufio.NewReader(strings.NewReader(bad)), 0)); err == nil {
			t.Errorf("ReadReply(%q) accepted", bad)
		}
	}
}

func TestParseEnhancedCode(t *testing.T) {
	for s, ok := range map[string]bool{"2.0.0": true, "4.3.1": true, "5.7.123": true, "3.0.0": false, "5.1234.1": false, "5.1": false, "x.1.1": false, "55.1.1": false} {
		if _, err := ParseEnhancedCode(s); (err == nil) != ok {
			t.Errorf("ParseEnhancedCode(%q): %v", s, err)
		}
	}
}

func TestReceivedHeader(t *testing.T) {
	date := time.Date(2026, 11, 21, 13, 5, 0, 0, time.FixedZone("", -5*3600))
	h := ReceivedHeader{
		HELO: "client.example", ClientName: "c.example", ClientAddr: netip.MustParseAddr("192.0.2.7"),
		Host: "mx.example", Version: "smx 0.1", Protocol: Protocol(true, true, false),
		TLS: &TLSFacts{Version: "TLSv1.3", Cipher: "TLS_AES_128_GCM_SHA256", Bits: 128, Verify: "NO"},
		ID:  "S00000000407EAE4E00", Date: date,
	}
	want := "Received: from client.example (c.example [192.0.2.7])\r\n" +
		"\tby mx.example (smx 0.1) with ESMTPS\r\n" +
		"\t(TLS=TLSv1.3, cipher=TLS_AES_128_GCM_SHA256, bits=128, verify=NO)\r\n" +
		"\tid S00000000407EAE4E00; Sat, 21 Nov 2026 13:05:00 -0500\r\n"
	if got := string(h.Append(nil)); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	h = ReceivedHeader{HELO: "evil\r\nX-Injected: (yes)", ClientAddr: netip.MustParseAddr("::1"), Host: "mx", Protocol: Protocol(false, false, false), ID: "S1", Date: date}
	got := string(h.Append(nil))
	if !strings.HasPrefix(got, "Received: from evil??X-Injected: _yes_ ([IPv6:::1])\r\n\tby mx with SMTP\r\n") {
		t.Errorf("got %q", got)
	}
	if Protocol(true, false, true) != "ESMTPA" || Protocol(true, true, true) != "ESMTPSA" || Protocol(true, false, false) != "ESMTP" {
		t.Error("Protocol")
	}
}

func TestHeaderScanner(t *testing.T) {
	msg := "Received: from a\r\n\tby b\r\nRECEIVED: x\r\nMessage-ID:\r\n <id@example>\r\nX-Received: no\r\n\r\nReceived: body\r\n"
	for _, split := range []int{1, 2, 7, 1000} {
		s := NewHeaderScanner()
		for i := 0; i < len(msg); i += split {
			s.Write([]byte(msg[i:min(i+split, len(msg))]))
		}
		if s.Hops() != 2 || s.MessageID() != "<id@example>" || s.InHeader() || s.HeaderSize() != int64(strings.Index(msg, "\r\n\r\n")+4) {
			t.Errorf("split %d: hops %d id %q in %v size %d", split, s.Hops(), s.MessageID(), s.InHeader(), s.HeaderSize())
		}
	}
	s := NewHeaderScanner()
	s.Write([]byte("Subject: x\r\nnot a header line\r\nReceived: y\r\n"))
	if s.InHeader() || s.Hops() != 0 {
		t.Errorf("malformed header: in %v hops %d", s.InHeader(), s.Hops())
	}
	for line, want := range map[string]bool{"Subject: x": true, "From me": false, " x: y": false, ":x": false, "": false, "X-A:": true} {
		if IsHeaderLine([]byte(line)) != want {
			t.Errorf("IsHeaderLine(%q) != %v", line, want)
		}
	}
}
