package smtp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// LineChecker applies the line rules of DataReader to data that arrives
// without dot-stuffing, in pieces that need not end at line ends: the
// chunks of BDAT (RFC 3030). Every CR must be followed by LF and every LF
// preceded by CR, also across pieces; lines longer than the limit are
// noted. One LineChecker follows one message.
type LineChecker struct {
	maxLine  int
	prevCR   bool
	lineLen  int
	longLine bool
	err      error
}

// NewLineChecker returns a checker with the line limit maxLine (octets
// including CRLF; 0 means none).
func NewLineChecker(maxLine int) *LineChecker { return &LineChecker{maxLine: maxLine} }

// LongLine reports whether a line so far exceeded the limit.
func (c *LineChecker) LongLine() bool { return c.longLine }

// Check inspects the next piece of the message. It returns ErrBareCR or
// ErrBareLF (and keeps returning it) once the message has broken the rule.
func (c *LineChecker) Check(p []byte) error {
	if c.err != nil {
		return c.err
	}
	for len(p) > 0 {
		if c.prevCR {
			if p[0] != '\n' {
				c.err = ErrBareCR
				return c.err
			}
			c.prevCR = false
			c.endLine(1)
			p = p[1:]
			continue
		}
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			c.lineLen += len(p)
			c.noteLong()
			return nil
		}
		if p[i] == '\n' {
			c.err = ErrBareLF
			return c.err
		}
		c.lineLen += i + 1
		c.prevCR = true
		p = p[i+1:]
	}
	return nil
}

func (c *LineChecker) endLine(n int) {
	c.lineLen += n
	c.noteLong()
	c.lineLen = 0
}

func (c *LineChecker) noteLong() {
	if c.maxLine > 0 && c.lineLen > c.maxLine {
		c.longLine = true
	}
}

// End is called after the last piece: a message that ends in a CR has a
// bare CR.
func (c *LineChecker) End() error {
	if c.err == nil && c.prevCR {
		c.err = ErrBareCR
	}
	return c.err
}

// ChunkReader reads the octets of one BDAT chunk: exactly the announced
// number, whatever they contain, so that the session stays in step even
// when the content is refused.
type ChunkReader struct {
	br        *bufio.Reader
	remaining int64
	check     *LineChecker
}

// NewChunkReader returns a reader of the next size octets of br, checked by
// check (which may be nil).
func NewChunkReader(br *bufio.Reader, size int64, check *LineChecker) *ChunkReader {
	return &ChunkReader{br: br, remaining: size, check: check}
}

// WriteTo implements io.WriterTo: it copies the chunk to w straight from
// the read buffer. A line rule broken (ErrBareCR, ErrBareLF) stops the copy
// and is returned; the caller ends the session. When w fails, the rest of
// the chunk is still consumed and w's error returned.
func (c *ChunkReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	var werr error
	for c.remaining > 0 {
		n := c.br.Buffered()
		if n == 0 {
			if _, err := c.br.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return total, fmt.Errorf("smtp: bdat: %w", err)
			}
			n = c.br.Buffered()
		}
		if int64(n) > c.remaining {
			n = int(c.remaining)
		}
		p, _ := c.br.Peek(n)
		if c.check != nil {
			if err := c.check.Check(p); err != nil {
				return total, err
			}
		}
		if werr == nil {
			_, werr = w.Write(p)
		}
		c.br.Discard(n)
		c.remaining -= int64(n)
		total += int64(n)
	}
	return total, werr
}
