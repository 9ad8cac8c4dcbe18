package client

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits on what a server may send in one reply. RFC 5321 4.5.3.1.5 allows
// 512 octets per reply line; servers exceed that in practice, so the limit is
// generous, but it is a limit: nothing behind the reader sees unbounded input.
const (
	maxReplyLine  = 4096
	maxReplyLines = 256
)

// Reply is one SMTP reply: a code, an optional RFC 3463 enhanced status code
// and the text of each line.
type Reply struct {
	Code int
	// Enhanced is the enhanced status code taken from the first line, for
	// example "5.1.1", or "" when the server sent none.
	Enhanced string
	// Lines holds the text of each line without the code, the separator and
	// the enhanced status code.
	Lines []string
	// Local is true when the reply was made up by this client (a connection
	// failure, a timeout, a local check) rather than sent by the server.
	Local bool
}

// Class returns the first digit of the code: 2 success, 3 intermediate, 4
// temporary failure, 5 permanent failure.
func (r Reply) Class() int { return r.Code / 100 }

// Positive reports whether the code is 2xx or 3xx.
func (r Reply) Positive() bool { return r.Code >= 200 && r.Code < 400 }

// Temporary reports whether the code is 4xx.
func (r Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// Permanent reports whether the code is 5xx.
func (r Reply) Permanent() bool { return r.Code >= 500 && r.Code < 600 }

// Message returns the text of all lines joined by single spaces.
func (r Reply) Message() string { return strings.Join(r.Lines, " ") }

// String returns the reply as one line: "550 5.1.1 text of all lines".
func (r Reply) String() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(r.Code))
	if r.Enhanced != "" {
		b.WriteByte(' ')
		b.WriteString(r.Enhanced)
	}
	if msg := r.Message(); msg != "" {
		b.WriteByte(' ')
		b.WriteString(msg)
	}
	return b.String()
}

// localReply makes a reply that this client made up.
func localReply(code int, enhanced, format string, args ...any) Reply {
	return Reply{Code: code, Enhanced: enhanced, Lines: []string{fmt.Sprintf(format, args...)}, Local: true}
}

// ErrMalformedReply is wrapped by every error about a reply that does not
// follow RFC 5321 4.2.
var ErrMalformedReply = errors.New("malformed reply")

// readReply reads one possibly multi-line reply from r.
func readReply(r *bufio.Reader) (Reply, error) {
	var rep Reply
	for n := 0; ; n++ {
		if n == maxReplyLines {
			return rep, fmt.Errorf("%w: more than %d lines", ErrMalformedReply, maxReplyLines)
		}
		line, err := readLine(r)
		if err != nil {
			return rep, err
		}
		code, more, text, err := parseReplyLine(line)
		if err != nil {
			return rep, err
		}
		if n == 0 {
			rep.Code = code
			rep.Enhanced, text = splitEnhanced(code, text)
		} else {
			if code != rep.Code {
				return rep, fmt.Errorf("%w: code %d in a continuation of %d", ErrMalformedReply, code, rep.Code)
			}
			if rep.Enhanced != "" {
				text = strings.TrimPrefix(strings.TrimPrefix(text, rep.Enhanced), " ")
			}
		}
		rep.Lines = append(rep.Lines, text)
		if !more {
			return rep, nil
		}
	}
}

// readLine reads a line ending in CRLF or a bare LF and returns it without
// the line ending. Lines longer than maxReplyLine are an error.
func readLine(r *bufio.Reader) (string, error) {
	var buf []byte
	for {
		frag, isPrefix, err := r.ReadLine()
		if err != nil {
			if err == io.EOF && len(buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		if len(buf)+len(frag) > maxReplyLine {
			return "", fmt.Errorf("%w: line longer than %d bytes", ErrMalformedReply, maxReplyLine)
		}
		if !isPrefix && buf == nil {
			return string(frag), nil
		}
		buf = append(buf, frag...)
		if !isPrefix {
			return string(buf), nil
		}
	}
}

// parseReplyLine splits "250-text" into its code, whether more lines
// follow, and the text.
func parseReplyLine(line string) (code int, more bool, text string, err error) {
	if len(line) < 3 {
		return 0, false, "", fmt.Errorf("%w: short line %q", ErrMalformedReply, clip(line))
	}
	for i := 0; i < 3; i++ {
		if line[i] < '0' || line[i] > '9' {
			return 0, false, "", fmt.Errorf("%w: no code in %q", ErrMalformedReply, clip(line))
		}
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	if code < 200 || code > 599 {
		return 0, false, "", fmt.Errorf("%w: code %d out of range", ErrMalformedReply, code)
	}
	if len(line) == 3 {
		return code, false, "", nil
	}
	switch line[3] {
	case ' ':
		return code, false, line[4:], nil
	case '-':
		return code, true, line[4:], nil
	}
	return 0, false, "", fmt.Errorf("%w: bad separator in %q", ErrMalformedReply, clip(line))
}

// splitEnhanced takes an RFC 3463 enhanced status code off the front of
// text when its class agrees with code.
func splitEnhanced(code int, text string) (enhanced, rest string) {
	end := strings.IndexByte(text, ' ')
	if end < 0 {
		end = len(text)
	}
	candidate := text[:end]
	if !validEnhanced(candidate) || int(candidate[0]-'0') != code/100 {
		return "", text
	}
	return candidate, strings.TrimPrefix(text[end:], " ")
}

// validEnhanced reports whether s has the form class.subject.detail with
// class 2, 4 or 5, subject of 1 to 3 digits and detail of 1 to 3 digits.
func validEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.Contains("245", parts[0]) {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
	}
	return true
}

// clip shortens untrusted text for error messages.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
