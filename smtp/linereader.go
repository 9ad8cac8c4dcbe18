package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Errors of the line readers. A server answers ErrLineTooLong and goes on
// (the rest of the line has been consumed, the stream is in step); ErrBareLF
// and ErrBareCR end the session, as the seed requires lines to end in CRLF
// and sendmail 8.18 drops a session that sends a bare CR or LF in a message.
var (
	ErrLineTooLong = errors.New("smtp: line too long")
	ErrBareLF      = errors.New("smtp: bare LF")
	ErrBareCR      = errors.New("smtp: bare CR")
)

// DefaultCommandLineLimit is the command line limit LineReader uses when
// given 0: RFC 5321 allows 512 octets, and each extension a client uses may
// add to that (RFC 3461 DSN parameters, RFC 4954 AUTH=), so the default
// leaves room for all of them together.
const DefaultCommandLineLimit = 2048

// LineReader reads CRLF-terminated lines of at most a fixed length, the
// edge where command input enters the server and reply input enters the
// client. Nothing behind it sees an unbounded line.
type LineReader struct {
	br  *bufio.Reader
	max int
	buf []byte
}

// NewLineReader returns a LineReader over br whose lines (including CRLF)
// may be max octets long; max 0 means DefaultCommandLineLimit.
func NewLineReader(br *bufio.Reader, max int) *LineReader {
	lr := &LineReader{br: br}
	lr.SetLimit(max)
	return lr
}

// SetLimit changes the line limit, for example for the long lines of an
// AUTH exchange; 0 means DefaultCommandLineLimit.
func (lr *LineReader) SetLimit(max int) {
	if max <= 0 {
		max = DefaultCommandLineLimit
	}
	lr.max = max
}

// Limit returns the current line limit.
func (lr *LineReader) Limit() int { return lr.max }

// Reader returns the buffered reader beneath lr, for reading message data
// after a DATA or BDAT command.
func (lr *LineReader) Reader() *bufio.Reader { return lr.br }

// Buffered returns the number of bytes read from the connection but not yet
// consumed: input a client sent ahead of a reply.
func (lr *LineReader) Buffered() int { return lr.br.Buffered() }

// ReadLine returns the next line without its CRLF. The slice is valid until
// the next call. A line longer than the limit is consumed up to its LF and
// reported as ErrLineTooLong; a line ending in LF alone as ErrBareLF; a CR
// that is not followed by LF as ErrBareCR. A stream that ends inside a line
// yields io.ErrUnexpectedEOF, one that ends between lines io.EOF.
func (lr *LineReader) ReadLine() ([]byte, error) {
	lr.buf = lr.buf[:0]
	tooLong := false
	for {
		chunk, err := lr.br.ReadSlice('\n')
		if !tooLong {
			if len(lr.buf)+len(chunk) > lr.max {
				tooLong = true
				lr.buf = lr.buf[:0]
			} else if err == nil && len(lr.buf) == 0 {
				// The common case: the whole line is in the buffer.
				return checkLine(chunk)
			} else {
				lr.buf = append(lr.buf, chunk...)
			}
		}
		switch {
		case err == nil:
			if tooLong {
				return nil, fmt.Errorf("%w (limit %d octets)", ErrLineTooLong, lr.max)
			}
			return checkLine(lr.buf)
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(lr.buf) == 0 && len(chunk) == 0 && !tooLong {
				return nil, io.EOF
			}
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// checkLine strips the CRLF of a line that ends in LF and checks it has no
// bare CR or LF.
func checkLine(line []byte) ([]byte, error) {
	n := len(line)
	if n < 2 || line[n-2] != '\r' {
		return nil, ErrBareLF
	}
	line = line[:n-2]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, ErrBareCR
	}
	return line, nil
}
