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

// FuzzLineChecker checks the BDAT line rules against the plain reference
// (every CR followed by LF, every LF preceded by CR), whatever the chunk
// boundaries: the verdict and the long-line note must not depend on where
// the message was cut. It also reads the message through ChunkReader.
func FuzzLineChecker(f *testing.F) {
	for _, s := range []string{"a\r\nb\r\n", "a\nb", "a\rb", "a\r", "\r\n\r\n", "0123456789\r\nx", "", "x\r\r\n"} {
		f.Add([]byte(s), uint8(3), uint8(8))
	}
	f.Fuzz(func(t *testing.T, in []byte, cut, maxLine uint8) {
		want, wantLong := referenceLines(in, int(maxLine))
		c := NewLineChecker(int(maxLine))
		step := int(cut)%7 + 1
		var err error
		for i := 0; i < len(in) && err == nil; i += step {
			err = c.Check(in[i:min(i+step, len(in))])
		}
		if err == nil {
			err = c.End()
		}
		if err != want {
			t.Fatalf("%q cut every %d: %v, reference %v", in, step, err, want)
		}
		if err == nil && c.LongLine() != wantLong {
			t.Fatalf("%q limit %d: long line %v, reference %v", in, maxLine, c.LongLine(), wantLong)
		}
		// ChunkReader hands over exactly the chunk, whatever follows it.
		br := bufio.NewReaderSize(bytes.NewReader(append(append([]byte{}, in...), "NEXT"...)), 16)
		var out bytes.Buffer
		n, rerr := NewChunkReader(br, int64(len(in)), nil).WriteTo(&out)
		rest, _ := io.ReadAll(br)
		if rerr != nil || n != int64(len(in)) || !bytes.Equal(out.Bytes(), in) || string(rest) != "NEXT" {
			t.Fatalf("chunk %q: read %q (%d, %v), left %q", in, out.Bytes(), n, rerr, rest)
		}
	})
}

// referenceLines is the line rule of BDAT data the obvious way.
func referenceLines(in []byte, maxLine int) (error, bool) {
	long := false
	lineLen := 0
	for i := 0; i < len(in); i++ {
		lineLen++
		switch in[i] {
		case '\r':
			if i+1 == len(in) || in[i+1] != '\n' {
				return ErrBareCR, false
			}
		case '\n':
			if i == 0 || in[i-1] != '\r' {
				return ErrBareLF, false
			}
			if maxLine > 0 && lineLen > maxLine {
				long = true
			}
			lineLen = 0
		}
	}
	if maxLine > 0 && lineLen > maxLine {
		long = true
	}
	return nil, long
}

// FuzzHeaderScanner feeds a message to HeaderScanner whole and in pieces:
// hops, header size, Message-ID and where the header ends must not depend
// on the pieces, the hops never exceed the Received: fields of the
// message, and the header never outgrows the message.
func FuzzHeaderScanner(f *testing.F) {
	for _, s := range []string{
		"Received: a\r\nReceived: b\r\n\r\nbody\r\n", "Message-ID:\r\n <x@y>\r\nSubject: s\r\n\r\n",
		"not a header\r\nReceived: x\r\n", "\r\n", "RECEIVED:x\r\n\tcont\r\n\r", "X:\r\n\r\nReceived: y\r\n",
	} {
		f.Add([]byte(s), uint8(2))
	}
	f.Fuzz(func(t *testing.T, in []byte, cut uint8) {
		whole := NewHeaderScanner()
		whole.Write(in)
		pieces := NewHeaderScanner()
		step := int(cut)%11 + 1
		for i := 0; i < len(in); i += step {
			pieces.Write(in[i:min(i+step, len(in))])
		}
		if whole.Hops() != pieces.Hops() || whole.HeaderSize() != pieces.HeaderSize() ||
			whole.MessageID() != pieces.MessageID() || whole.InHeader() != pieces.InHeader() {
			t.Fatalf("%q whole: hops %d size %d id %q in %v; cut every %d: hops %d size %d id %q in %v", in,
				whole.Hops(), whole.HeaderSize(), whole.MessageID(), whole.InHeader(), step,
				pieces.Hops(), pieces.HeaderSize(), pieces.MessageID(), pieces.InHeader())
		}
		if max := bytes.Count(bytes.ToLower(in), []byte("received:")); whole.Hops() > max {
			t.Fatalf("%q: %d hops, only %d Received: in the message", in, whole.Hops(), max)
		}
		if whole.HeaderSize() > int64(len(in)) || len(whole.MessageID()) > maxMessageIDLength {
			t.Fatalf("%q: header size %d, Message-ID %d octets", in, whole.HeaderSize(), len(whole.MessageID()))
		}
	})
}

// FuzzLineReader checks the command line reader against the obvious
// reference, whatever the buffer size: each LF ends a line; a line over the
// limit (CRLF included) is ErrLineTooLong and reading goes on; otherwise
// it must end in CRLF (ErrBareLF) and hold no other CR (ErrBareCR).
func FuzzLineReader(f *testing.F) {
	for _, s := range []string{"EHLO x\r\nQUIT\r\n", "a\nb\r\n", "x\ry\r\n", "0123456789abcdef\r\nok\r\n", "tail", ""} {
		f.Add([]byte(s), uint8(12), uint8(0))
	}
	f.Fuzz(func(t *testing.T, in []byte, limit, size uint8) {
		max := int(limit)%40 + 3
		lr := NewLineReader(bufio.NewReaderSize(bytes.NewReader(in), int(size)%32+16), max)
		rest := in
		for {
			line, err := lr.ReadLine()
			var want []byte
			var wantErr error
			i := bytes.IndexByte(rest, '\n')
			switch {
			case len(rest) == 0:
				wantErr = io.EOF
			case i < 0:
				wantErr = io.ErrUnexpectedEOF
			case i+1 > max:
				wantErr = ErrLineTooLong
			case i == 0 || rest[i-1] != '\r':
				wantErr = ErrBareLF
			case bytes.IndexByte(rest[:i-1], '\r') >= 0:
				wantErr = ErrBareCR
			default:
				want = rest[:i-1]
			}
			if !errors.Is(err, wantErr) || wantErr == nil && !bytes.Equal(line, want) {
				t.Fatalf("%q limit %d at %q: %q, %v; reference %q, %v", in, max, rest, line, err, want, wantErr)
			}
			if i < 0 || len(rest) == 0 {
				return
			}
			rest = rest[i+1:]
		}
	})
}
