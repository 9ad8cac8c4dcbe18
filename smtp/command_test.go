package smtp

import (
	"errors"
	"testing"
)

const allExt = ExtSize | Ext8BitMIME | ExtDSN | ExtSMTPUTF8 | ExtAuth

func TestParseCommand(t *testing.T) {
	tests := []struct {
		line, verb, arg string
		code            int
	}{
		{"EHLO client.example", "EHLO", "client.example", 0},
		{"mail FROM:<a@b.example>", "MAIL", "FROM:<a@b.example>", 0},
		{"QUIT", "QUIT", "", 0},
		{"STARTTLS", "STARTTLS", "", 0},
		{"", "", "", 500},
		{"MA\x00IL", "", "", 500},
		{"MAIL\rFROM", "", "", 500},
		{" MAIL", "", "", 500},
		{"M4IL FROM:<>", "", "", 500},
		{"GET / HTTP/1.0", "GET", "/ HTTP/1.0", 0},
	}
	for _, tt := range tests {
		c, err := ParseCommand([]byte(tt.line))
		if tt.code != 0 {
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.code {
				t.Errorf("ParseCommand(%q) = %v, %v; want reply %d", tt.line, c, err, tt.code)
			}
			continue
		}
		if err != nil || c.Verb != tt.verb || c.Arg != tt.arg {
			t.Errorf("ParseCommand(%q) = %+v, %v; want %s %q", tt.line, c, err, tt.verb, tt.arg)
		}
	}
}

func TestParseMail(t *testing.T) {
	tests := []struct {
		arg  string
		ext  Extensions
		want MailArgs
		code int
		enh  string
	}{
		{arg: "FROM:<user@some.domain>", want: MailArgs{From: Mailbox{"user", "some.domain"}}},
		{arg: "From:<>", want: MailArgs{}},
		{arg: "FROM:<@relay.example,@b.example:user@c.example>", want: MailArgs{From: Mailbox{"user", "c.example"}}},
		{arg: `FROM:<"john doe"@example.com>`, want: MailArgs{From: Mailbox{`"john doe"`, "example.com"}}},
		{arg: "FROM:<u@[192.0.2.1]>", want: MailArgs{From: Mailbox{"u", "[192.0.2.1]"}}},
		{arg: "FROM:<u@[IPv6:2001:db8::1]>", want: MailArgs{From: Mailbox{"u", "[IPv6:2001:db8::1]"}}},
		// The seed's example of what strictness catches.
		{arg: "FROM: <>", code: 501, enh: "5.5.2"},
		{arg: "FROM:user@some.domain", code: 501, enh: "5.5.2"},
		{arg: "FROM <a@b.example>", code: 501, enh: "5.5.2"},
		{arg: "FROM:<a@b.example", code: 501, enh: "5.1.7"},
		{arg: "FROM:<a@-b.example>", code: 501, enh: "5.1.7"},
		{arg: "FROM:<a..b@b.example>", code: 501, enh: "5.1.7"},
		{arg: "FROM:<a@b.example.>", code: 501, enh: "5.1.7"},
		{arg: "FROM:<a@[300.1.1.1]>", code: 501, enh: "5.1.7"},
		{arg: "FROM:<postmaster>", code: 501, enh: "5.1.7"},
		{arg: "FROM:<a@b.example>  SIZE=10", ext: allExt, code: 501, enh: "5.5.4"},
		{arg: "FROM:<a@b.example> SIZE=1000 BODY=8BITMIME RET=HDRS ENVID=QQ+2B1 SMTPUTF8 AUTH=<>", ext: allExt,
			want: MailArgs{From: Mailbox{"a", "b.example"}, Size: 1000, Body: "8BITMIME", RET: "HDRS", ENVID: "QQ+1", SMTPUTF8: true, Auth: "<>"}},
		{arg: "FROM:<a@b.example> size=12", ext: allExt, want: MailArgs{From: Mailbox{"a", "b.example"}, Size: 12}},
		{arg: "FROM:<a@b.example> SIZE=12", code: 555, enh: "5.5.4"}, // SIZE not offered
		{arg: "FROM:<a@b.example> SIZE=-1", ext: allExt, code: 501, enh: "5.5.4"},
		{arg: "FROM:<a@b.example> SIZE=1 SIZE=2", ext: allExt, code: 501, enh: "5.5.4"},
		{arg: "FROM:<a@b.example> BODY=BINARYMIME", ext: allExt, code: 501, enh: "5.5.4"},
		{arg: "FROM:<a@b.example> RET=ALL", ext: allExt, code: 501, enh: "5.5.4"},
		{arg: "FROM:<a@b.example> ENVID=a+zz", ext: allExt, code: 501, enh: "5.5.4"},
		{arg: "FROM:<a@b.example> SMTPUTF8=yes", ext: allExt, code: 501, enh: "5.5.4"},
		{arg: "FROM:<a@b.example> XVERP", ext: allExt, code: 555, enh: "5.5.4"},
		{arg: "FROM:<a@b.example> AUTH=joe+40example.com", ext: allExt, want: MailArgs{From: Mailbox{"a", "b.example"}, Auth: "joe@example.com"}},
		{arg: "FROM:<jöe@bücher.example> SMTPUTF8", ext: allExt, want: MailArgs{From: Mailbox{"jöe", "bücher.example"}, SMTPUTF8: true}},
		{arg: "FROM:<jöe@bücher.example>", ext: allExt, code: 553, enh: "5.6.7"},
		{arg: "FROM:<jöe@bücher.example> SMTPUTF8", ext: Ext8BitMIME, code: 501, enh: "5.1.7"},
	}
	for _, tt := range tests {
		got, err := ParseMail(tt.arg, tt.ext)
		if tt.code != 0 {
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.code || e.Enhanced.String() != tt.enh {
				t.Errorf("ParseMail(%q) error = %v; want %d %s", tt.arg, err, tt.code, tt.enh)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseMail(%q) = %+v, %v; want %+v", tt.arg, got, err, tt.want)
		}
	}
}

func TestParseRcpt(t *testing.T) {
	tests := []struct {
		arg  string
		utf8 bool
		want RcptArgs
		code int
		enh  string
	}{
		{arg: "TO:<x@y.example>", want: RcptArgs{To: Mailbox{"x", "y.example"}}},
		{arg: "TO:<Postmaster>", want: RcptArgs{To: Mailbox{Local: "Postmaster"}}},
		{arg: "to:<x@y.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x+40y.example",
			want: RcptArgs{To: Mailbox{"x", "y.example"}, Notify: NotifySuccess | NotifyFailure, ORCPT: "rfc822;x@y.example"}},
		{arg: "TO:<x@y.example> NOTIFY=NEVER", want: RcptArgs{To: Mailbox{"x", "y.example"}, Notify: NotifyNever}},
		{arg: "TO:<x@y.example> NOTIFY=NEVER,DELAY", code: 501, enh: "5.5.4"},
		{arg: "TO:<x@y.example> NOTIFY=SOMETIMES", code: 501, enh: "5.5.4"},
		{arg: "TO:<x@y.example> ORCPT=x+40y.example", code: 501, enh: "5.5.4"},
		{arg: "TO:<>", code: 501, enh: "5.1.3"},
		{arg: "TO: <x@y.example>", code: 501, enh: "5.5.2"},
		{arg: "TO:<ü@y.example>", code: 553, enh: "5.6.7"},
		{arg: "TO:<ü@y.example>", utf8: true, want: RcptArgs{To: Mailbox{"ü", "y.example"}}},
		{arg: "TO:<x@y.example> FOO=bar", code: 555, enh: "5.5.4"},
	}
	for _, tt := range tests {
		got, err := ParseRcpt(tt.arg, allExt, tt.utf8)
		if tt.code != 0 {
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.code || e.Enhanced.String() != tt.enh {
				t.Errorf("ParseRcpt(%q) error = %v; want %d %s", tt.arg, err, tt.code, tt.enh)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseRcpt(%q) = %+v, %v; want %+v", tt.arg, got, err, tt.want)
		}
	}
}

func TestParseBDAT(t *testing.T) {
	for _, tt := range []struct {
		arg  string
		size int64
		last bool
		ok   bool
	}{
		{"100", 100, false, true},
		{"0 LAST", 0, true, true},
		{"5 last", 5, true, true},
		{"", 0, false, false},
		{"-1", 0, false, false},
		{"10 FIRST", 0, false, false},
		{"10 ", 0, false, false},
		{"99999999999999999999", 0, false, false},
	} {
		size, last, err := ParseBDAT(tt.arg)
		if (err == nil) != tt.ok || size != tt.size || last != tt.last {
			t.Errorf("ParseBDAT(%q) = %d, %v, %v", tt.arg, size, last, err)
		}
	}
}

func TestXtext(t *testing.T) {
	for _, s := range []string{"", "plain", "a+b=c", "with space\x00\xff", "ü"} {
		enc := EncodeXtext(s)
		dec, err := DecodeXtext(enc)
		if err != nil || dec != s {
			t.Errorf("round trip %q -> %q -> %q, %v", s, enc, dec, err)
		}
	}
	for _, bad := range []string{"a+", "a+2", "a+2b", "a b", "a=b", "a\x80"} {
		if _, err := DecodeXtext(bad); err == nil {
			t.Errorf("DecodeXtext(%q) succeeded", bad)
		}
	}
}

func TestIsDomain(t *testing.T) {
	for s, want := range map[string]bool{
		"example.com": true, "a": true, "x-y.example": true, "-x.example": false,
		"x-.example": false, "a..b": false, "": false, "b\u00fccher.example": false,
		"under_score.example": false,
	} {
		if got := IsDomain(s, false); got != want {
			t.Errorf("IsDomain(%q) = %v", s, got)
		}
	}
	if !IsDomain("bücher.example", true) {
		t.Error("U-label refused with UTF-8")
	}
	if !IsAddressLiteral("[127.0.0.1]") || IsAddressLiteral("[::1]") || !IsAddressLiteral("[IPv6:::1]") || !IsAddressLiteral("[x400:abc]") {
		t.Error("address literals")
	}
}
