package smtp

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// EnhancedCode is an RFC 3463 enhanced status code class.subject.detail.
// The zero value means "no enhanced code".
type EnhancedCode struct {
	Class, Subject, Detail int
}

// IsZero reports whether e is the zero value (no enhanced code).
func (e EnhancedCode) IsZero() bool { return e == EnhancedCode{} }

// String formats e as "4.3.1"; the zero value formats as "".
func (e EnhancedCode) String() string {
	if e.IsZero() {
		return ""
	}
	return strconv.Itoa(e.Class) + "." + strconv.Itoa(e.Subject) + "." + strconv.Itoa(e.Detail)
}

// ParseEnhancedCode parses "class.subject.detail" as RFC 3463 defines it:
// class 2, 4 or 5, subject 1 to 3 digits, detail 1 to 3 digits.
func ParseEnhancedCode(s string) (EnhancedCode, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return EnhancedCode{}, fmt.Errorf("smtp: enhanced status code %q: want class.subject.detail", s)
	}
	var v [3]int
	for i, p := range parts {
		if len(p) == 0 || len(p) > 3 || (i == 0 && len(p) != 1) {
			return EnhancedCode{}, fmt.Errorf("smtp: enhanced status code %q: bad field %q", s, p)
		}
		for j := 0; j < len(p); j++ {
			if p[j] < '0' || p[j] > '9' {
				return EnhancedCode{}, fmt.Errorf("smtp: enhanced status code %q: bad field %q", s, p)
			}
			v[i] = v[i]*10 + int(p[j]-'0')
		}
	}
	if v[0] != 2 && v[0] != 4 && v[0] != 5 {
		return EnhancedCode{}, fmt.Errorf("smtp: enhanced status code %q: class must be 2, 4 or 5", s)
	}
	return EnhancedCode{v[0], v[1], v[2]}, nil
}

// E is a shorthand for a literal enhanced code: E(4, 3, 1) is 4.3.1.
func E(class, subject, detail int) EnhancedCode { return EnhancedCode{class, subject, detail} }

// Reply is an SMTP reply: a three-digit code, an optional enhanced status
// code (RFC 2034) and one or more lines of text.
type Reply struct {
	Code     int
	Enhanced EnhancedCode
	// Lines holds the text of each line without the code, the enhanced
	// code and the line end. A reply has at least one line; an empty Lines
	// is written as one empty line.
	Lines []string
}

// NewReply returns a one-line reply.
func NewReply(code int, enhanced EnhancedCode, text string) Reply {
	return Reply{Code: code, Enhanced: enhanced, Lines: []string{text}}
}

// Text returns the lines joined with a space: what a log line or a DSN
// shows of the reply.
func (r Reply) Text() string { return strings.Join(r.Lines, " ") }

// String formats r as one line "250 2.0.0 text" for logs (multi-line
// replies are joined).
func (r Reply) String() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(r.Code))
	if !r.Enhanced.IsZero() {
		b.WriteByte(' ')
		b.WriteString(r.Enhanced.String())
	}
	if t := r.Text(); t != "" {
		b.WriteByte(' ')
		b.WriteString(t)
	}
	return b.String()
}

// Positive reports whether r is a 2xx or 3xx reply.
func (r Reply) Positive() bool { return r.Code >= 200 && r.Code < 400 }

// Temporary reports whether r is a 4xx reply.
func (r Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// Permanent reports whether r is a 5xx reply.
func (r Reply) Permanent() bool { return r.Code >= 500 && r.Code < 600 }

// Append formats r in wire format (every line ends in CRLF, all but the
// last use "-" after the code) and appends it to b. The enhanced code, when
// set, is repeated on every line as RFC 2034 requires. CR and LF inside a
// line are replaced by spaces so that a reply can never be split by text it
// quotes.
func (r Reply) Append(b []byte) []byte {
	lines := r.Lines
	if len(lines) == 0 {
		lines = []string{""}
	}
	for i, l := range lines {
		b = strconv.AppendInt(b, int64(r.Code), 10)
		if i == len(lines)-1 {
			b = append(b, ' ')
		} else {
			b = append(b, '-')
		}
		if !r.Enhanced.IsZero() {
			b = append(b, r.Enhanced.String()...)
			if l != "" {
				b = append(b, ' ')
			}
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			if c == '\r' || c == '\n' {
				c = ' '
			}
			b = append(b, c)
		}
		b = append(b, '\r', '\n')
	}
	return b
}

// WriteTo writes r in wire format to w.
func (r Reply) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(r.Append(nil))
	return int64(n), err
}

// ErrBadReply is returned by ReadReply for input that is not an SMTP reply.
var ErrBadReply = errors.New("smtp: malformed reply")

// ReadReply reads one possibly multi-line reply from lr. An enhanced status
// code is recognised when the text of the last line starts with one whose
// class equals the first digit of the reply code; it is removed from every
// line that carries it.
func ReadReply(lr *LineReader) (Reply, error) {
	var r Reply
	for {
		line, err := lr.ReadLine()
		if err != nil {
			if errors.Is(err, io.EOF) && len(r.Lines) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return Reply{}, err
		}
		if len(line) < 3 {
			return Reply{}, fmt.Errorf("%w: %q", ErrBadReply, line)
		}
		code := 0
		for i := 0; i < 3; i++ {
			if line[i] < '0' || line[i] > '9' {
				return Reply{}, fmt.Errorf("%w: %q", ErrBadReply, line)
			}
			code = code*10 + int(line[i]-'0')
		}
		if code < 200 || code > 599 {
			return Reply{}, fmt.Errorf("%w: code %d", ErrBadReply, code)
		}
		if r.Lines != nil && code != r.Code {
			return Reply{}, fmt.Errorf("%w: code changes from %d to %d within a reply", ErrBadReply, r.Code, code)
		}
		r.Code = code
		last := true
		text := ""
		if len(line) > 3 {
			switch line[3] {
			case ' ':
			case '-':
				last = false
			default:
				return Reply{}, fmt.Errorf("%w: %q", ErrBadReply, line)
			}
			text = string(line[4:])
		}
		r.Lines = append(r.Lines, text)
		if last {
			break
		}
	}
	splitEnhanced(&r)
	return r, nil
}

// splitEnhanced moves a leading enhanced status code from the reply text
// into r.Enhanced.
func splitEnhanced(r *Reply) {
	last := r.Lines[len(r.Lines)-1]
	code, _, _ := strings.Cut(last, " ")
	e, err := ParseEnhancedCode(code)
	if err != nil || e.Class != r.Code/100 {
		return
	}
	r.Enhanced = e
	prefix := code
	for i, l := range r.Lines {
		if l == prefix {
			r.Lines[i] = ""
		} else if strings.HasPrefix(l, prefix+" ") {
			r.Lines[i] = l[len(prefix)+1:]
		}
	}
}

// Error is an error that carries the SMTP reply a server sends for it. The
// parsers of this package return *Error for input the peer got wrong, so
// the server can answer with r.Reply directly.
type Error struct {
	Reply
}

// Errorf returns an *Error with a one-line reply.
func Errorf(code int, enhanced EnhancedCode, format string, args ...any) *Error {
	return &Error{NewReply(code, enhanced, fmt.Sprintf(format, args...))}
}

// Error implements error.
func (e *Error) Error() string { return "smtp: " + e.Reply.String() }
