package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func readData(in string, bufSize, maxLine int) (string, string, *DataReader, error) {
	br := bufio.NewReaderSize(strings.NewReader(in), bufSize)
	d := NewDataReader(br, maxLine)
	out, err := io.ReadAll(d)
	rest, _ := io.ReadAll(br)
	return string(out), string(rest), d, err
}

func TestDataReader(t *testing.T) {
	tests := []struct {
		name, in, out, rest string
		err                 error
	}{
		{"simple", "Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n", "Subject: x\r\n\r\nbody\r\n", "QUIT\r\n", nil},
		{"empty", ".\r\n", "", "", nil},
		{"unstuff", "..\r\n..x\r\n.y\r\n.\r\n", ".\r\n.x\r\ny\r\n", "", nil},
		{"dot inside line", "a.b\r\n. \r\n.\r\n", "a.b\r\n \r\n", "", nil},
		// SMTP smuggling: none of these is an end of data.
		{"LF dot LF", "a\n.\nMAIL FROM:<x@y>\r\n.\r\n", "", "", ErrBareLF},
		{"CRLF dot LF", "a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n", "a\r\n", "", ErrBareLF},
		{"LF dot CRLF", "a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n", "", "", ErrBareLF},
		{"CR dot CR", "a\r.\rMAIL\r\n.\r\n", "", "", ErrBareCR},
		{"CRLF dot CR", "a\r\n.\r\r\n.\r\n", "a\r\n", "", ErrBareCR},
		{"bare CR in line", "a\rb\r\n.\r\n", "", "", ErrBareCR},
		{"CR CR LF", "a\r\r\n.\r\n", "", "", ErrBareCR},
		{"bare LF first", "\n.\r\n", "", "", ErrBareLF},
		{"eof", "abc\r\n", "abc\r\n", "", io.ErrUnexpectedEOF},
		{"eof mid line", "abc", "", "", io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		for _, size := range []int{16, 4096} {
			out, rest, _, err := readData(tt.in, size, 0)
			if tt.err == nil && err != nil || tt.err != nil && !errors.Is(err, tt.err) {
				t.Errorf("%s/%d: err = %v, want %v", tt.name, size, err, tt.err)
				continue
			}
			if tt.err == nil && (out != tt.out || rest != tt.rest) {
				t.Errorf("%s/%d: out %q rest %q, want %q %q", tt.name, size, out, rest, tt.out, tt.rest)
			}
			if tt.err != nil && !strings.HasPrefix(tt.out, out) {
				t.Errorf("%s/%d: out %q before error, want a prefix of %q", tt.name, size, out, tt.out)
			}
		}
	}
}

func TestDataReaderLongLines(t *testing.T) {
	long := strings.Repeat("x", 100)
	// A line split by the read buffer, with its CR at the split.
	in := long + "\r\n" + strings.Repeat("y", 15) + "\r\n.\r\n"
	out, _, d, err := readData(in, 16, 0)
	if err != nil || out != in[:len(in)-3] {
		t.Fatalf("got %q, %v", out, err)
	}
	if d.LongLine() {
		t.Error("LongLine without a limit")
	}
	_, _, d, err = readData(in, 16, 100)
	if err != nil || !d.LongLine() {
		t.Errorf("102-octet line with limit 100: LongLine %v, err %v", d.LongLine(), err)
	}
	_, _, d, _ = readData(in, 16, 102)
	if d.LongLine() {
		t.Error("102-octet line with limit 102 is not too long")
	}
	// A stuffed dot does not count.
	_, _, d, _ = readData("."+strings.Repeat("z", 98)+"\r\n.\r\n", 16, 100)
	if d.LongLine() {
		t.Error("stuffed dot counted")
	}
}

func TestDataReaderWriteToDiscard(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("a\r\n..b\r\n.\r\nNEXT\r\n"))
	var buf bytes.Buffer
	d := NewDataReader(br, 0)
	if n, err := d.WriteTo(&buf); err != nil || n != 7 || buf.String() != "a\r\n.b\r\n" || d.Size() != 7 {
		t.Fatalf("WriteTo = %d, %v, %q", n, err, buf.String())
	}
	br = bufio.NewReader(strings.NewReader("a\r\n.\r\nNEXT\r\n"))
	if err := NewDataReader(br, 0).Discard(); err != nil {
		t.Fatal(err)
	}
	if l, _ := br.ReadString('\n'); l != "NEXT\r\n" {
		t.Errorf("after Discard: %q", l)
	}
}

func TestLineReader(t *testing.T) {
	in := "EHLO x\r\n" + strings.Repeat("a", 30) + "\r\nNOOP\r\nbare\nQUIT\r\nx\ry\r\nlast"
	lr := NewLineReader(bufio.NewReaderSize(strings.NewReader(in), 16), 20)
	expect := []struct {
		line string
		err  error
	}{
		{"EHLO x", nil}, {"", ErrLineTooLong}, {"NOOP", nil}, {"", ErrBareLF}, {"QUIT", nil}, {"", ErrBareCR},
		{"", io.ErrUnexpectedEOF},
	}
	for i, e := range expect {
		l, err := lr.ReadLine()
		if e.err != nil {
			if !errors.Is(err, e.err) {
				t.Fatalf("line %d: err %v, want %v", i, err, e.err)
			}
			continue
		}
		if err != nil || string(l) != e.line {
			t.Fatalf("line %d: %q, %v; want %q", i, l, err, e.line)
		}
	}
	lr = NewLineReader(bufio.NewReader(strings.NewReader("A\r\n")), 0)
	lr.ReadLine()
	if _, err := lr.ReadLine(); err != io.EOF {
		t.Errorf("at end: %v", err)
	}
}

func TestLineCheckerAndChunks(t *testing.T) {
	c := NewLineChecker(10)
	for _, p := range []string{"ab\r", "\ncd", "\r\n", "0123456789\r\n"} {
		if err := c.Check([]byte(p)); err != nil {
			t.Fatalf("Check(%q): %v", p, err)
		}
	}
	if !c.LongLine() || c.End() != nil {
		t.Errorf("LongLine %v End %v", c.LongLine(), c.End())
	}
	for in, want := range map[string]error{"a\nb": ErrBareLF, "a\rb": ErrBareCR, "a\r": ErrBareCR, "a\r\n\r\r\n": ErrBareCR} {
		c := NewLineChecker(0)
		err := c.Check([]byte(in))
		if err == nil {
			err = c.End()
		}
		if err != want {
			t.Errorf("%q: %v, want %v", in, err, want)
		}
	}
	br := bufio.NewReaderSize(strings.NewReader("0123456789abcdefghijBDAT 0 LAST\r\n"), 16)
	var buf bytes.Buffer
	cr := NewChunkReader(br, 20, NewLineChecker(0))
	if n, err := cr.WriteTo(&buf); n != 20 || err != nil || buf.String() != "0123456789abcdefghij" {
		t.Fatalf("chunk: %d %v %q", n, err, buf.String())
	}
	if rest, _ := br.ReadString('\n'); rest != "BDAT 0 LAST\r\n" {
		t.Errorf("after chunk: %q", rest)
	}
	br = bufio.NewReader(strings.NewReader("short"))
	if _, err := NewChunkReader(br, 10, nil).WriteTo(io.Discard); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short chunk: %v", err)
	}
}

func TestDotWriterRoundTrip(t *testing.T) {
	tests := map[string]string{
		"":                      ".\r\n",
		"a\r\n":                 "a\r\n.\r\n",
		"a":                     "a\r\n.\r\n",
		".\r\n..x\r\n":          "..\r\n...x\r\n.\r\n",
		"a\n.\nb":               "a\r\n..\r\nb\r\n.\r\n",
		"a\r.\rb\r":             "a\r\n..\r\nb\r\n.\r\n",
		"x\r\n.\r\nMAIL FROM:x": "x\r\n..\r\nMAIL FROM:x\r\n.\r\n",
	}
	for in, want := range tests {
		for _, split := range []int{1, 3, 1000} {
			var buf bytes.Buffer
			w := NewDotWriter(&buf)
			for i := 0; i < len(in); i += split {
				w.Write([]byte(in[i:min(i+split, len(in))]))
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if buf.String() != want {
				t.Errorf("DotWriter(%q) split %d = %q, want %q", in, split, buf.String(), want)
			}
			out, _, _, err := readData(buf.String(), 4096, 0)
			if err != nil {
				t.Errorf("DataReader rejects DotWriter output %q: %v", buf.String(), err)
			}
			if strings.HasSuffix(in, "\r\n") && !strings.ContainsAny(strings.ReplaceAll(in, "\r\n", ""), "\r\n") && out != in {
				t.Errorf("round trip %q -> %q", in, out)
			}
		}
	}
}
