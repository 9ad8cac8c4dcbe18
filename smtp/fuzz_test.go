package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"MAIL FROM:<a@b.example> SIZE=10 BODY=8BITMIME",
		"RCPT TO:<Postmaster> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+40b",
		"MAIL FROM: <>", "RCPT TO:<\"q\\\"x\"@[IPv6:::1]>", "EHLO [127.0.0.1]", "BDAT 10 LAST",
		"MAIL FROM:<@a,@b:c@d> AUTH=<> ENVID=x+2B SMTPUTF8", "RCPT TO:<ü@ü>",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		c, err := ParseCommand(line)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code/100 != 5 {
				t.Fatalf("error without a 5xx reply: %v", err)
			}
			return
		}
		for _, ext := range []Extensions{0, allExt} {
			if m, err := ParseMail(c.Arg, ext); err == nil {
				if !m.From.IsNull() {
					checkMailbox(t, m.From, ext&ExtSMTPUTF8 != 0)
				}
				if m.Size < 0 {
					t.Fatalf("negative size")
				}
			} else if e := (*Error)(nil); !errors.As(err, &e) {
				t.Fatalf("ParseMail error without reply: %v", err)
			}
			if r, err := ParseRcpt(c.Arg, ext, true); err == nil {
				if r.To.Domain != "" {
					checkMailbox(t, r.To, true)
				} else if !strings.EqualFold(r.To.Local, "postmaster") {
					t.Fatalf("domain-less recipient %q", r.To.Local)
				}
			}
		}
		ParseBDAT(c.Arg)
	})
}

// checkMailbox checks that a parsed mailbox parses again to itself.
func checkMailbox(t *testing.T, m Mailbox, utf8 bool) {
	t.Helper()
	again, err := ParseMailbox(m.String(), utf8)
	if err != nil || again != m {
		t.Fatalf("mailbox %q does not parse to itself: %+v, %v", m.String(), again, err)
	}
	if len(m.Local) > MaxLocalPartLength || len(m.Domain) > MaxDomainLength {
		t.Fatalf("mailbox over the limits: %q", m.String())
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"<a@b>", "<>", "<@x,@y:a@b>", `<"a b"@c>`, "<a@[1.2.3.4]>", "<a@[IPv6:::1]> SIZE=1", "<Postmaster>", "<a@b"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, utf8 bool) {
		m, rest, err := ParsePath(s, PathOptions{AllowNull: true, AllowPostmaster: true, UTF8: utf8})
		if err != nil {
			return
		}
		if !strings.HasSuffix(s, rest) {
			t.Fatalf("rest %q is not a suffix of %q", rest, s)
		}
		if !m.IsNull() && m.Domain != "" {
			checkMailbox(t, m, utf8)
			if !utf8 && !m.IsASCII() {
				t.Fatalf("non-ASCII mailbox without UTF-8: %q", m.String())
			}
		}
	})
}

// FuzzDataReader checks the DATA reader against a plain reference: the
// message ends at the first CRLF.CRLF and nowhere else, a bare CR or LF
// before it is an error, and the output is the unstuffed message.
func FuzzDataReader(f *testing.F) {
	for _, s := range []string{
		"a\r\n.\r\n", "..x\r\n.\r\n", "a\n.\n", "a\r\n.\nb\r\n.\r\n", "x\r.\r\n", ".\r\n", "abc",
		"Subject: s\r\n\r\nbody\r\n..\r\n.\r\nQUIT\r\n",
	} {
		f.Add([]byte(s), uint8(16))
	}
	f.Fuzz(func(t *testing.T, in []byte, size uint8) {
		br := bufio.NewReaderSize(bytes.NewReader(in), int(size)+16)
		d := NewDataReader(br, 0)
		out, err := io.ReadAll(d)
		want, wantErr := referenceData(in)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("err %v, reference %v (input %q)", err, wantErr, in)
		}
		if err == nil && !bytes.Equal(out, want) {
			t.Fatalf("out %q, reference %q", out, want)
		}
		if err != nil && !bytes.HasPrefix(want, out) && !bytes.HasPrefix(out, want) {
			t.Fatalf("partial out %q not a prefix of %q", out, want)
		}
		if flat := bytes.ReplaceAll(out, []byte("\r\n"), nil); err == nil && bytes.ContainsAny(flat, "\r\n") {
			t.Fatalf("bare CR/LF in output %q", out)
		}
		// Whatever the reader accepted survives DotWriter and back.
		if err == nil {
			var wire bytes.Buffer
			w := NewDotWriter(&wire)
			w.Write(out)
			w.Close()
			back, err := io.ReadAll(NewDataReader(bufio.NewReader(&wire), 0))
			if err != nil || !bytes.Equal(back, out) {
				t.Fatalf("round trip %q -> %q, %v", out, back, err)
			}
		}
	})
}

// referenceData is the obvious line-by-line DATA reader.
func referenceData(in []byte) ([]byte, error) {
	var out []byte
	for {
		i := bytes.IndexByte(in, '\n')
		if i < 0 {
			return out, io.ErrUnexpectedEOF
		}
		line := in[:i+1]
		in = in[i+1:]
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return out, ErrBareLF
		}
		if bytes.IndexByte(line[:len(line)-2], '\r') >= 0 {
			return out, ErrBareCR
		}
		if string(line) == ".\r\n" {
			return out, nil
		}
		if line[0] == '.' {
			line = line[1:]
		}
		out = append(out, line...)
	}
}

func FuzzDotWriter(f *testing.F) {
	for _, s := range []string{"", "a", ".\r\n", "a\n.\n", "\r\r\n.", "x\r\n.\r\nMAIL"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var wire bytes.Buffer
		w := NewDotWriter(&wire)
		w.Write(in)
		w.Close()
		// The data must end exactly at the terminator the writer added.
		br := bufio.NewReader(&wire)
		if err := NewDataReader(br, 0).Discard(); err != nil {
			t.Fatalf("DotWriter output rejected: %v (%q)", err, wire.String())
		}
		if br.Buffered() != 0 {
			t.Fatalf("data ended early in %q", in)
		}
	})
}
