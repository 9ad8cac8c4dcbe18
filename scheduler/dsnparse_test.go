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
	from, to, subject string
	perMessage        textproto.MIMEHeader
	rcpts             []textproto.MIMEHeader
	returned          string // content type of the third part, "none" without
	returnedBody      bool   // the third part goes on past the header
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
	if params["report-type"] != "delivery-status" {
		return nil, fmt.Errorf("report-type %q", params["report-type"])
	}
	p := &parsedDSN{from: msg.Header.Get("From"), to: msg.Header.Get("To"), subject: msg.Header.Get("Subject"), returned: "none"}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	if _, err := mr.NextPart(); err != nil {
		return nil, err
	}
	part, err := mr.NextPart()
	if err != nil {
		return nil, err
	}
	tr := textproto.NewReader(bufio.NewReader(part))
	if p.perMessage, err = tr.ReadMIMEHeader(); err != nil {
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
	returned, err := io.ReadAll(part)
	if err != nil {
		return nil, err
	}
	_, rest, _ := strings.Cut(string(returned), "\r\n\r\n")
	p.returnedBody = strings.TrimSpace(rest) != ""
	if _, err := mr.NextPart(); err != io.EOF {
		return nil, fmt.Errorf("a part after the returned message: %v", err)
	}
	return p, nil
}
