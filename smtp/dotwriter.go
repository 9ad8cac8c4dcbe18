package smtp

import (
	"bufio"
	"io"
)

// DotWriter writes a message as the DATA section of an SMTP transaction:
// it doubles a dot at the start of a line (RFC 5321 4.5.2), ends the
// message with CRLF "." CRLF on Close, and turns any bare CR or LF in its
// input into CRLF, so that nothing it emits can be read as an end of data by
// any server (SMTP smuggling). Input is the message as the content store
// keeps it: CRLF line ends, no dot-stuffing.
type DotWriter struct {
	w      *bufio.Writer
	bol    bool // the next octet starts a line
	prevCR bool // a CR was withheld, waiting to see whether LF follows
	closed bool
}

// NewDotWriter returns a DotWriter that writes to w. Close flushes w when w
// is a *bufio.Writer the DotWriter made.
func NewDotWriter(w io.Writer) *DotWriter {
	bw, ok := w.(*bufio.Writer)
	if !ok {
		bw = bufio.NewWriter(w)
	}
	return &DotWriter{w: bw, bol: true}
}

// Write implements io.Writer.
func (d *DotWriter) Write(p []byte) (int, error) {
	if d.closed {
		return 0, io.ErrClosedPipe
	}
	start := 0 // p[start:i] is pending output
	for i := 0; i < len(p); i++ {
		c := p[i]
		if d.prevCR {
			d.prevCR = false
			d.w.WriteString("\r\n")
			d.bol = true
			if c == '\n' {
				start = i + 1
				continue
			}
		}
		switch {
		case c == '\r':
			d.w.Write(p[start:i])
			d.prevCR = true
			start = i + 1
		case c == '\n':
			d.w.Write(p[start:i])
			d.w.WriteString("\r\n")
			d.bol = true
			start = i + 1
		case d.bol:
			d.bol = false
			if c == '.' {
				d.w.Write(p[start:i])
				d.w.WriteByte('.')
				start = i
			}
		}
	}
	if _, err := d.w.Write(p[start:]); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close ends the data: a final CRLF when the message does not end in one,
// then "." CRLF, and flushes.
func (d *DotWriter) Close() error {
	if d.closed {
		return nil
	}
	d.closed = true
	if d.prevCR || !d.bol {
		d.w.WriteString("\r\n")
	}
	d.w.WriteString(".\r\n")
	return d.w.Flush()
}
