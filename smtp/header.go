package smtp

import (
	"bytes"
	"strings"
)

// IsHeaderLine reports whether line (the first line of a message, with or
// without its CRLF) starts a header field: a field name of printable ASCII
// other than ":" followed by ":" (RFC 5322 2.2). A message whose first line
// is not a header line (a body without header, a line starting with white
// space, an mbox "From " line) needs a blank line after the Received:
// header the server puts in front of it (seed 004, DATA).
func IsHeaderLine(line []byte) bool {
	for i, c := range line {
		switch {
		case c == ':':
			return i > 0
		case c < 33 || c > 126:
			return false
		}
	}
	return false
}

// maxMessageIDLength bounds what HeaderScanner keeps of a Message-ID.
const maxMessageIDLength = 998

// HeaderScanner watches a message header stream past: fed with the message
// in pieces of any size, it counts the Received: fields (the seed's hop
// count), measures the header section, and keeps the Message-ID. It stops
// looking at the first empty line, or at a line that is neither a field
// nor a continuation (which ends the header as far as trace fields go).
type HeaderScanner struct {
	inHeader   bool
	bol        bool
	nameDone   bool   // the field name of the current line is complete
	name       []byte // field name of the current line (bounded)
	capture    bool   // the current field is Message-ID
	msgID      []byte
	hops       int
	headerSize int64
	blankCR    bool // the blank line's CR ended the last piece
}

// NewHeaderScanner returns a scanner at the start of a message.
func NewHeaderScanner() *HeaderScanner {
	return &HeaderScanner{inHeader: true, bol: true}
}

// Hops returns the number of Received: fields seen.
func (s *HeaderScanner) Hops() int { return s.hops }

// HeaderSize returns the size of the header section in octets, including
// the empty line that ends it.
func (s *HeaderScanner) HeaderSize() int64 { return s.headerSize }

// InHeader reports whether the scanner is still inside the header.
func (s *HeaderScanner) InHeader() bool { return s.inHeader }

// MessageID returns the Message-ID field body with surrounding white space
// removed, or "".
func (s *HeaderScanner) MessageID() string {
	return strings.TrimSpace(strings.Join(strings.Fields(string(s.msgID)), " "))
}

// Write implements io.Writer; it never fails.
func (s *HeaderScanner) Write(p []byte) (int, error) {
	if !s.inHeader {
		if s.blankCR && len(p) > 0 && p[0] == '\n' {
			s.headerSize++
		}
		s.blankCR = false
		return len(p), nil
	}
	for i, c := range p {
		s.headerSize++
		if s.bol {
			s.bol = false
			s.nameDone = false
			s.name = s.name[:0]
			switch c {
			case ' ', '\t':
				// Continuation of the previous field.
				s.nameDone = true
				s.appendID(c)
				continue
			case '\r', '\n':
				s.inHeader = false
				// Count the rest of the blank line.
				if c == '\r' && i+1 < len(p) && p[i+1] == '\n' {
					s.headerSize++
				} else if c == '\r' && i+1 == len(p) {
					// The LF, if it comes, is in the next piece.
					s.blankCR = true
				}
				return len(p), nil
			}
			s.capture = false
		}
		if c == '\n' {
			s.bol = true
			continue
		}
		if !s.nameDone {
			if c == ':' {
				s.nameDone = true
				switch {
				case bytesEqualFold(s.name, "received"):
					s.hops++
				case bytesEqualFold(s.name, "message-id"):
					s.capture = true
					s.msgID = s.msgID[:0]
				}
				continue
			}
			if c < 33 || c > 126 {
				// Not a header field: the header has ended.
				s.inHeader = false
				return len(p), nil
			}
			if len(s.name) < 16 {
				s.name = append(s.name, c)
			}
			continue
		}
		s.appendID(c)
	}
	return len(p), nil
}

func (s *HeaderScanner) appendID(c byte) {
	if s.capture && c != '\r' && len(s.msgID) < maxMessageIDLength {
		s.msgID = append(s.msgID, c)
	}
}

func bytesEqualFold(b []byte, s string) bool { return bytes.EqualFold(b, []byte(s)) }
