// Package ids makes and parses the session and transaction identifiers of
// the seed (sendmail X, "Format of Session/Transaction Identifiers"):
//
//   - SMTP server ids (ss_sess, ss_ta): 'S', a 64-bit counter and an 8-bit
//     process id, in upper-case hexadecimal, e.g. S00000000407CE49200;
//   - SMTP client ids (da_sess, da_ta): 'C', an 8-bit process id, a 32-bit
//     counter and a 32-bit thread index, e.g. C010000137D00000000.
//
// The server counter never repeats, not across restarts and not after a
// crash: ServerSequence reserves blocks of it in a small file that is
// fsynced before any id of a new block is handed out. Client ids are unique
// within one run of smxd, as the seed specifies.
//
// The package owns only its counter file; it knows nothing of sessions,
// the event log or the mail log.
package ids

import (
	"errors"
	"fmt"
)

// ServerLen and ClientLen are the lengths of the text forms.
const (
	ServerLen = 1 + 16 + 2
	ClientLen = 1 + 2 + 8 + 8
)

// Server is an SMTP server session or transaction id (ss_sess, ss_ta).
type Server struct {
	Counter uint64 // the 64-bit counter
	Process uint8  // the "process" id: the smtps section's id option
}

// Client is a delivery agent session or transaction id (da_sess, da_ta).
type Client struct {
	Process uint8  // the "process" id of the delivery agent
	Counter uint32 // the 32-bit counter
	Thread  uint32 // the thread index: the delivery slot that used it
}

const hexDigits = "0123456789ABCDEF"

func appendHex(b []byte, v uint64, digits int) []byte {
	for shift := (digits - 1) * 4; shift >= 0; shift -= 4 {
		b = append(b, hexDigits[(v>>uint(shift))&0xF])
	}
	return b
}

// AppendText appends the text form of id to b and returns the result.
func (id Server) AppendText(b []byte) ([]byte, error) { return id.Append(b), nil }

// Append appends the text form of id to b, without allocating when b has
// room for ServerLen more bytes.
func (id Server) Append(b []byte) []byte {
	b = append(b, 'S')
	b = appendHex(b, id.Counter, 16)
	return appendHex(b, uint64(id.Process), 2)
}

// String returns the text form, for example "S00000000407CE49200".
func (id Server) String() string {
	var buf [ServerLen]byte
	return string(id.Append(buf[:0]))
}

// IsZero reports whether id is the zero value, which no generator returns.
func (id Server) IsZero() bool { return id == Server{} }

// Append appends the text form of id to b.
func (id Client) Append(b []byte) []byte {
	b = append(b, 'C')
	b = appendHex(b, uint64(id.Process), 2)
	b = appendHex(b, uint64(id.Counter), 8)
	return appendHex(b, uint64(id.Thread), 8)
}

// AppendText appends the text form of id to b and returns the result.
func (id Client) AppendText(b []byte) ([]byte, error) { return id.Append(b), nil }

// String returns the text form, for example "C010000137D00000000".
func (id Client) String() string {
	var buf [ClientLen]byte
	return string(id.Append(buf[:0]))
}

// IsZero reports whether id is the zero value, which no generator returns.
func (id Client) IsZero() bool { return id == Client{} }

// ErrSyntax is wrapped by the parse errors.
var ErrSyntax = errors.New("invalid id")

func parseHex(s string) (uint64, bool) {
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}

// ParseServer parses the text form of a server id. Hex digits may be of
// either case; the leading 'S' must be upper case.
func ParseServer(s string) (Server, error) {
	if len(s) != ServerLen || s[0] != 'S' {
		return Server{}, fmt.Errorf("%w: %q: want 'S' and 18 hex digits", ErrSyntax, s)
	}
	counter, ok1 := parseHex(s[1:17])
	proc, ok2 := parseHex(s[17:])
	if !ok1 || !ok2 {
		return Server{}, fmt.Errorf("%w: %q: want 'S' and 18 hex digits", ErrSyntax, s)
	}
	return Server{Counter: counter, Process: uint8(proc)}, nil
}

// ParseClient parses the text form of a client id.
func ParseClient(s string) (Client, error) {
	if len(s) != ClientLen || s[0] != 'C' {
		return Client{}, fmt.Errorf("%w: %q: want 'C' and 18 hex digits", ErrSyntax, s)
	}
	proc, ok1 := parseHex(s[1:3])
	counter, ok2 := parseHex(s[3:11])
	thread, ok3 := parseHex(s[11:])
	if !ok1 || !ok2 || !ok3 {
		return Client{}, fmt.Errorf("%w: %q: want 'C' and 18 hex digits", ErrSyntax, s)
	}
	return Client{Process: uint8(proc), Counter: uint32(counter), Thread: uint32(thread)}, nil
}

// UnmarshalText parses a server id, so that Server works with encoders.
func (id *Server) UnmarshalText(b []byte) error {
	v, err := ParseServer(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// UnmarshalText parses a client id, so that Client works with encoders.
func (id *Client) UnmarshalText(b []byte) error {
	v, err := ParseClient(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// MarshalText returns the text form of id.
func (id Server) MarshalText() ([]byte, error) { return id.Append(nil), nil }

// MarshalText returns the text form of id.
func (id Client) MarshalText() ([]byte, error) { return id.Append(nil), nil }
