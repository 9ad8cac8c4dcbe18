package scheduler

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
)

// parsedDSN is a DSN read back with the standard library's parsers.
type parsedDSN struct {
	to, subject string
	rcpts       []textproto.MIMEHeader
	returned    string // content type of the third part, "none" without
}

func parseDSN(raw []byte) (*parsedDSN, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" {
		return nil, fmt.Errorf("content type %q: %v", mt, err)
	}
	p := &parsedDSN{to: msg.Header.Get("To"), subject: msg.Header.Get("Subject"), returned: "none"}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	if _, err := mr.NextPart(); err != nil {
		return nil, err
	}
	part, err := mr.NextPart()
	if err != nil {
		return nil, err
	}
	tr := textproto.NewReader(bufio.NewReader(part))
	if _, err := tr.ReadMIMEHeader(); err != nil {
		return nil, err
	}
	for {
		h, err := tr.ReadMIMEHeader()
		if len(h) > 0 {
			p.rcpts = append(p.rcpts, h)
		}
		if err != nil {
			break
		}
	}
	part, err = mr.NextPart()
	if err == io.EOF {
		return p, nil
	}
	if err != nil {
		return nil, err
	}
	p.returned = strings.SplitN(part.Header.Get("Content-Type"), ";", 2)[0]
	return p, nil
}
