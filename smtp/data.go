package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// DataReader reads the message a client sends after "354": lines ending in
// CRLF, terminated by a line holding a single dot. It removes dot-stuffing
// (RFC 5321 4.5.2) and yields the message with its CRLF line ends, which is
// how the content store keeps it.
//
// It is the SMTP smuggling defence of sendmail 8.18 (seed 003, "o", "g" and
// "u"): only CRLF "." CRLF ends the data. A bare LF or a bare CR anywhere
// stops the reader with ErrBareLF or ErrBareCR; it is never taken as a line
// end, so "\n.\n", "\r\n.\n" or "\n.\r\n" can never end the message early.
// The server then drops the session with 421, as sendmail does.
//
// A line longer than the limit does not stop reading: LongLine reports it
// after the fact and the server rejects the message once the data has
// ended, keeping the session in step.
type DataReader struct {
	br      *bufio.Reader
	maxLine int

	pending  []byte // unstuffed data of the current chunk not yet returned
	bol      bool   // the next chunk starts a line
	prevCR   bool   // the last chunk ended in CR (a line split by the buffer)
	lineLen  int    // octets of the current line so far
	longLine bool
	size     int64
	err      error // sticky: io.EOF at the end of data, or a hard error
}

// NewDataReader returns a reader of one DATA section from br. maxLine is the
// line limit in octets including CRLF, not counting a stuffed dot (RFC 5321
// 4.5.3.1.6); 0 means no limit.
func NewDataReader(br *bufio.Reader, maxLine int) *DataReader {
	return &DataReader{br: br, maxLine: maxLine, bol: true}
}

// LongLine reports whether a line so far exceeded the limit.
func (d *DataReader) LongLine() bool { return d.longLine }

// Size returns the number of octets returned so far (after unstuffing).
func (d *DataReader) Size() int64 { return d.size }

// next reads the next chunk from br into d.pending, or sets d.err.
func (d *DataReader) next() {
	chunk, err := d.br.ReadSlice('\n')
	full := false
	switch {
	case err == nil:
	case errors.Is(err, bufio.ErrBufferFull):
		full = true
	case errors.Is(err, io.EOF):
		d.err = fmt.Errorf("smtp: data: connection closed before end of data: %w", io.ErrUnexpectedEOF)
		return
	default:
		d.err = fmt.Errorf("smtp: data: %w", err)
		return
	}
	if d.prevCR && chunk[0] != '\n' {
		d.err = ErrBareCR
		return
	}
	if d.bol && chunk[0] == '.' {
		if !full && len(chunk) == 3 && chunk[1] == '\r' {
			d.err = io.EOF
			return
		}
		chunk = chunk[1:] // unstuff; what remains is checked below
		if len(chunk) == 0 {
			// A dot that filled the buffer: cannot happen with a buffer
			// of more than one byte, but never loop on it.
			d.err = ErrBareCR
			return
		}
	}
	n := len(chunk)
	if full {
		if bytes.IndexByte(chunk[:n-1], '\r') >= 0 {
			d.err = ErrBareCR
			return
		}
		d.prevCR = chunk[n-1] == '\r'
		d.bol = false
		d.lineLen += n
	} else {
		// chunk ends in LF.
		switch {
		case n >= 2:
			if chunk[n-2] != '\r' {
				d.err = ErrBareLF
				return
			}
			if bytes.IndexByte(chunk[:n-2], '\r') >= 0 {
				d.err = ErrBareCR
				return
			}
		case !d.prevCR:
			d.err = ErrBareLF
			return
		}
		d.prevCR = false
		d.bol = true
		d.lineLen += n
		if d.maxLine > 0 && d.lineLen > d.maxLine {
			d.longLine = true
		}
		d.lineLen = 0
	}
	if d.maxLine > 0 && d.lineLen > d.maxLine {
		d.longLine = true
	}
	d.pending = chunk
}

// Read implements io.Reader. It returns io.EOF after the terminating dot
// line, ErrBareLF or ErrBareCR for a bare line end, and an error wrapping
// io.ErrUnexpectedEOF when the connection ends first.
func (d *DataReader) Read(p []byte) (int, error) {
	for len(d.pending) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		d.next()
	}
	n := copy(p, d.pending)
	d.pending = d.pending[n:]
	d.size += int64(n)
	return n, nil
}

// WriteTo implements io.WriterTo: it writes the message to w chunk by chunk
// straight from the read buffer, without a copy in between. It returns nil
// at the end of data.
func (d *DataReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		for len(d.pending) == 0 {
			if d.err != nil {
				if d.err == io.EOF {
					return total, nil
				}
				return total, d.err
			}
			d.next()
		}
		n, err := w.Write(d.pending)
		d.pending = d.pending[n:]
		d.size += int64(n)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
}

// Discard reads and drops the rest of the data. It returns nil at the end
// of data, or the error that ended it early.
func (d *DataReader) Discard() error {
	_, err := d.WriteTo(io.Discard)
	return err
}
