package dsn

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const original = "Received: from client.example by mx.smx.test; Mon, 2 Jan 2006 15:04:05 +0000\r\n" +
	"From: Alice <alice@example.org>\r\n" +
	"To: bob@example.com\r\n" +
	"Subject: hello\r\n" +
	"Message-ID: <orig@example.org>\r\n" +
	"\r\n" +
	"Body line one.\r\n" +
	"Body line two.\r\n"

var (
	arrival = time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	now     = arrival.Add(2 * time.Hour)
)

// parsed is a DSN read back with the standard MIME parsers.
type parsed struct {
	header     mail.Header
	text       string
	perMessage textproto.MIMEHeader
	perRcpt    []textproto.MIMEHeader
	origType   string
	orig       string
}

func parse(t *testing.T, raw []byte) parsed {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	require.NoError(t, err)
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "multipart/report", mt)
	require.Equal(t, "delivery-status", params["report-type"])
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var p parsed
	p.header = msg.Header

	part, err := mr.NextPart()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(part.Header.Get("Content-Type"), "text/plain"))
	text, _ := io.ReadAll(part)
	p.text = string(text)

	part, err = mr.NextPart()
	require.NoError(t, err)
	require.Contains(t, part.Header.Get("Content-Type"), "delivery-status")
	tr := textproto.NewReader(bufio.NewReader(part))
	p.perMessage, err = tr.ReadMIMEHeader()
	require.NoError(t, err)
	for {
		h, err := tr.ReadMIMEHeader()
		if len(h) > 0 {
			p.perRcpt = append(p.perRcpt, h)
		}
		if err != nil {
			break
		}
	}

	part, err = mr.NextPart()
	if err == io.EOF {
		return p
	}
	require.NoError(t, err)
	p.origType = part.Header.Get("Content-Type")
	orig, _ := io.ReadAll(part)
	p.orig = string(orig)
	_, err = mr.NextPart()
	require.Equal(t, io.EOF, err)
	return p
}

func failedReport() *Report {
	return &Report{
		ReportingMTA: "mx.smx.test",
		To:           "alice@example.org",
		MessageID:    "S0000000000000001200.dsn@mx.smx.test",
		Date:         now,
		Boundary:     "S0000000000000001200/mx.smx.test",
		QueueID:      "S0000000000000001100",
		ENVID:        "env-42",
		Sender:       "alice@example.org",
		Arrival:      arrival,
		Recipients: []Recipient{
			{
				Addr: "bob@example.com", ORCPT: "rfc822;Bob@Example.COM", Action: ActionFailed,
				Status: "5.1.1", RemoteMTA: "mx.example.com", Diagnostic: "550 5.1.1 <bob@example.com>: user unknown, sorry",
				Stage: "rcpt", LastAttempt: now.Add(-time.Minute),
			},
			{
				Addr: "carol@example.net", Action: ActionFailed, Status: "4.4.7",
				Diagnostic:     "delivery time expired; last error: 451 4.4.1 connect to mx.example.net: connection refused",
				DiagnosticType: "x-local", LastAttempt: now.Add(-2 * time.Minute),
			},
		},
		Return: ReturnFull,
	}
}

func TestFailureFieldByField(t *testing.T) {
	var buf bytes.Buffer
	eight, err := Write(&buf, failedReport(), strings.NewReader(original))
	require.NoError(t, err)
	require.False(t, eight)
	for _, l := range strings.SplitAfter(buf.String(), "\n") {
		require.True(t, l == "" || strings.HasSuffix(l, "\r\n"), "line without CRLF: %q", l)
		require.LessOrEqual(t, len(l), 998+2)
	}
	p := parse(t, buf.Bytes())

	require.Equal(t, "Undelivered Mail Returned to Sender", p.header.Get("Subject"))
	from, err := mail.ParseAddress(p.header.Get("From"))
	require.NoError(t, err)
	require.Equal(t, "MAILER-DAEMON@mx.smx.test", from.Address)
	to, err := mail.ParseAddress(p.header.Get("To"))
	require.NoError(t, err)
	require.Equal(t, "alice@example.org", to.Address)
	require.Equal(t, "<S0000000000000001200.dsn@mx.smx.test>", p.header.Get("Message-ID"))
	require.Equal(t, "auto-replied", p.header.Get("Auto-Submitted"))
	date, err := p.header.Date()
	require.NoError(t, err)
	require.True(t, date.Equal(now))

	require.Contains(t, p.text, "could not")
	require.Contains(t, p.text, "<bob@example.com>: 550 5.1.1")
	require.Contains(t, p.text, "in reply to RCPT TO")

	require.Equal(t, "dns; mx.smx.test", p.perMessage.Get("Reporting-MTA"))
	require.Equal(t, "env-42", p.perMessage.Get("Original-Envelope-Id"))
	require.Equal(t, "S0000000000000001100", p.perMessage.Get("X-SMX-Queue-ID"))
	arr, err := mail.ParseDate(p.perMessage.Get("Arrival-Date"))
	require.NoError(t, err)
	require.True(t, arr.Equal(arrival))

	require.Len(t, p.perRcpt, 2)
	bob := p.perRcpt[0]
	require.Equal(t, "rfc822; bob@example.com", bob.Get("Final-Recipient"))
	require.Equal(t, "rfc822; Bob@Example.COM", bob.Get("Original-Recipient"))
	require.Equal(t, "failed", bob.Get("Action"))
	require.Equal(t, "5.1.1", bob.Get("Status"))
	require.Equal(t, "dns; mx.example.com", bob.Get("Remote-MTA"))
	require.Equal(t, "smtp; 550 5.1.1 <bob@example.com>: user unknown, sorry", unfold(bob.Get("Diagnostic-Code")))
	last, err := mail.ParseDate(bob.Get("Last-Attempt-Date"))
	require.NoError(t, err)
	require.True(t, last.Equal(now.Add(-time.Minute)))

	carol := p.perRcpt[1]
	require.Equal(t, "rfc822; carol@example.net", carol.Get("Final-Recipient"))
	require.Empty(t, carol.Get("Original-Recipient"))
	require.Empty(t, carol.Get("Remote-MTA"))
	require.Equal(t, "4.4.7", carol.Get("Status"))
	require.True(t, strings.HasPrefix(unfold(carol.Get("Diagnostic-Code")), "x-local; delivery time expired"))

	require.Equal(t, "message/rfc822", p.origType)
	require.Equal(t, original, p.orig)
	orig, err := mail.ReadMessage(strings.NewReader(p.orig))
	require.NoError(t, err)
	require.Equal(t, "hello", orig.Header.Get("Subject"))
}

// unfold undoes header folding as textproto leaves it.
func unfold(s string) string { return strings.Join(strings.Fields(s), " ") }

func TestHeadersOnly(t *testing.T) {
	r := failedReport()
	r.Return = ReturnHeaders
	var buf bytes.Buffer
	_, err := Write(&buf, r, strings.NewReader(strings.ReplaceAll(original, "\r\n", "\n")))
	require.NoError(t, err)
	p := parse(t, buf.Bytes())
	require.Equal(t, "text/rfc822-headers", p.origType)
	require.NotContains(t, p.orig, "Body line")
	require.Contains(t, p.orig, "Subject: hello\r\n")
	h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(p.orig + "\r\n"))).ReadMIMEHeader()
	require.NoError(t, err)
	require.Equal(t, "<orig@example.org>", h.Get("Message-Id"))
}

func TestDelayAndSuccess(t *testing.T) {
	until := arrival.Add(5 * 24 * time.Hour)
	r := &Report{
		ReportingMTA: "mx.smx.test", To: "alice@example.org", MessageID: "d@mx", Date: now,
		Boundary: "b/1", Sender: "alice@example.org", Arrival: arrival, Return: ReturnHeaders,
		Recipients: []Recipient{{
			Addr: "bob@example.com", Action: ActionDelayed, Status: "4.4.1",
			Diagnostic: "connect to mx.example.com: connection refused", DiagnosticType: "x-local",
			LastAttempt: now, WillRetryUntil: until,
		}},
	}
	var buf bytes.Buffer
	_, err := Write(&buf, r, strings.NewReader(original))
	require.NoError(t, err)
	p := parse(t, buf.Bytes())
	require.Equal(t, "Delayed Mail (still being retried)", p.header.Get("Subject"))
	require.Equal(t, "delayed", p.perRcpt[0].Get("Action"))
	wru, err := mail.ParseDate(p.perRcpt[0].Get("Will-Retry-Until"))
	require.NoError(t, err)
	require.True(t, wru.Equal(until))
	require.Equal(t, "text/rfc822-headers", p.origType)

	r.Recipients = []Recipient{
		{Addr: "bob@example.com", Action: ActionRelayed, Status: "2.0.0", RemoteMTA: "mx.example.com", Diagnostic: "250 2.0.0 queued as X"},
		{Addr: "dan@example.com", Action: ActionDelivered, Status: "2.0.0", RemoteMTA: "mx.example.com", Diagnostic: "250 2.0.0 ok"},
	}
	buf.Reset()
	_, err = Write(&buf, r, strings.NewReader(original))
	require.NoError(t, err)
	p = parse(t, buf.Bytes())
	require.Equal(t, "Successful Mail Delivery Report", p.header.Get("Subject"))
	require.Equal(t, "relayed", p.perRcpt[0].Get("Action"))
	require.Equal(t, "delivered", p.perRcpt[1].Get("Action"))
	require.Contains(t, unfold(p.text), "relayed to a server that does not offer delivery notifications")
}

func TestNoOriginalAndHostileText(t *testing.T) {
	r := failedReport()
	r.Return = ReturnNone
	r.Recipients[0].Diagnostic = "550 evil\r\nBcc: victim@example.com\r\n\r\n--" + r.Boundary + "--"
	var buf bytes.Buffer
	_, err := Write(&buf, r, nil)
	require.NoError(t, err)
	p := parse(t, buf.Bytes())
	require.Empty(t, p.origType)
	require.Len(t, p.perRcpt, 2)
	require.Empty(t, p.header.Get("Bcc"))
	require.Empty(t, p.perRcpt[0].Get("Bcc"))
	require.Contains(t, unfold(p.perRcpt[0].Get("Diagnostic-Code")), "550 evil Bcc: victim@example.com")

	// The boundary inside the original cannot end the part early.
	r.Return = ReturnFull
	buf.Reset()
	_, err = Write(&buf, r, strings.NewReader("Subject: x\r\n\r\n--"+r.Boundary+"--\r\nmore\r\n"))
	require.NoError(t, err)
	p = parse(t, buf.Bytes())
	require.Contains(t, p.orig, "more")
}

// TestUTF8ReplyInASCIIReport: a remote server's reply in UTF-8 does not
// make a report on ASCII addresses 8-bit (it is sent as 7BIT); in a report
// with UTF-8 addresses it stays as it was.
func TestUTF8ReplyInASCIIReport(t *testing.T) {
	r := failedReport()
	r.Recipients[0].Diagnostic = "550 5.1.1 Empfänger unbekannt"
	var buf bytes.Buffer
	eight, err := Write(&buf, r, strings.NewReader(original))
	require.NoError(t, err)
	require.False(t, eight)
	require.True(t, isASCII(buf.String()))
	p := parse(t, buf.Bytes())
	require.Equal(t, "smtp; 550 5.1.1 Empf?nger unbekannt", p.perRcpt[0].Get("Diagnostic-Code"))
	require.Contains(t, unfold(p.text), "550 5.1.1 Empf?nger unbekannt")

	r.Recipients[1].Addr = "jörg@example.net"
	buf.Reset()
	eight, err = Write(&buf, r, strings.NewReader(original))
	require.NoError(t, err)
	require.True(t, eight)
	p = parse(t, buf.Bytes())
	require.Equal(t, "smtp; 550 5.1.1 Empfänger unbekannt", p.perRcpt[0].Get("Diagnostic-Code"))
}

func TestUTF8Addresses(t *testing.T) {
	r := failedReport()
	r.Recipients[0].Addr = "jörg@example.com"
	var buf bytes.Buffer
	eight, err := Write(&buf, r, strings.NewReader(original))
	require.NoError(t, err)
	require.True(t, eight)
	p := parse(t, buf.Bytes())
	require.Equal(t, "utf-8; jörg@example.com", p.perRcpt[0].Get("Final-Recipient"))
	require.Equal(t, "message/global", p.origType)
}

func TestLongLinesAndNoRecipients(t *testing.T) {
	_, err := Write(io.Discard, &Report{Boundary: "x"}, nil)
	require.ErrorIs(t, err, ErrNoRecipients)

	r := failedReport()
	long := "Subject: " + strings.Repeat("x", 100<<10) + "\r\n\r\nbody\r\n"
	var buf bytes.Buffer
	_, err = Write(&buf, r, strings.NewReader(long))
	require.NoError(t, err)
	p := parse(t, buf.Bytes())
	require.Equal(t, long, p.orig)
}
