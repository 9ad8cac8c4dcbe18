package maps

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// MaxNetstring bounds the payload of a netstring the socket map reads.
const MaxNetstring = 1 << 20

// AppendNetstring appends s as a netstring ("11:hello there,") to b.
func AppendNetstring(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	b = append(b, s...)
	return append(b, ',')
}

// ReadNetstring reads one netstring of at most max bytes of payload.
func ReadNetstring(r *bufio.Reader, max int) (string, error) {
	n := 0
	digits := 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			if digits > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		if c == ':' {
			break
		}
		if c < '0' || c > '9' {
			return "", fmt.Errorf("netstring: bad length byte %q", c)
		}
		if digits > 0 && n == 0 {
			return "", errors.New("netstring: length with leading zero")
		}
		digits++
		n = n*10 + int(c-'0')
		if n > max {
			return "", fmt.Errorf("netstring: length over %d", max)
		}
	}
	if digits == 0 {
		return "", errors.New("netstring: missing length")
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return "", err
	}
	if buf[n] != ',' {
		return "", errors.New("netstring: missing ','")
	}
	return string(buf[:n]), nil
}

// socketStatus is the status word of a socket map reply.
type socketStatus uint8

const (
	statusOK socketStatus = iota
	statusNotFound
	statusTemp
	statusTimeout
	statusPerm
)

// parseSocketReply splits a socket map reply "STATUS result".
func parseSocketReply(reply string) (socketStatus, string, error) {
	word, rest := reply, ""
	for i := 0; i < len(reply); i++ {
		if reply[i] == ' ' {
			word, rest = reply[:i], reply[i+1:]
			break
		}
	}
	switch word {
	case "OK":
		return statusOK, rest, nil
	case "NOTFOUND":
		return statusNotFound, rest, nil
	case "TEMP":
		return statusTemp, rest, nil
	case "TIMEOUT":
		return statusTimeout, rest, nil
	case "PERM":
		return statusPerm, rest, nil
	}
	return 0, "", fmt.Errorf("socket map: unknown status %q", truncate(word, 32))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
