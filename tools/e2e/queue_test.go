package e2e

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"slices"
	"strings"
	"testing"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"
)

// TestRelayOneManyAndFailingRecipients relays through smxd to the sink a
// message with one recipient, one with many (they share the destination,
// so they go in one transaction), and one of whose recipients the sink
// refuses with 550: the other recipients arrive and the sender gets one
// bounce from the null sender, a multipart/report read back with the
// standard MIME parsers, that names the refused recipient with the sink's
// reply and returns the whole message.
func TestRelayOneManyAndFailingRecipients(t *testing.T) {
	t.Parallel()
	snk := newSink(t)
	snk.setRcpt(func(addr string) error {
		if strings.HasPrefix(addr, "gone") {
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no mailbox here by that name"}
		}
		return nil
	})
	e := newEnv(t, envOptions{sinkPort: snk.port})
	p := e.start(t)

	mustSend(t, e.addr(), "alice@client.test", []string{"one@dest.test"}, "one")
	many := []string{"m1@dest.test", "m2@dest.test", "m3@dest.test", "m4@dest.test", "m5@dest.test"}
	mustSend(t, e.addr(), "alice@client.test", many, "many")
	failing := mustSend(t, e.addr(), "alice@client.test", []string{"ok1@dest.test", "gone@dest.test", "ok2@dest.test"}, "failing")

	// Three relayed messages and the bounce.
	msgs := snk.waitFor(t, "three messages and a bounce", func(ms []sinkMsg) bool {
		return len(ms) >= 4 && slices.ContainsFunc(ms, func(m sinkMsg) bool { return m.From == "" })
	})
	bySeq := map[string][]sinkMsg{}
	var bounces []sinkMsg
	for _, m := range msgs {
		if m.From == "" {
			bounces = append(bounces, m)
			continue
		}
		bySeq[m.header("X-Seq")] = append(bySeq[m.header("X-Seq")], m)
	}
	require.Len(t, bySeq["one"], 1)
	require.Equal(t, []string{"one@dest.test"}, bySeq["one"][0].To)
	require.Len(t, bySeq["many"], 1, "the recipients of one message to one destination go in one transaction")
	require.ElementsMatch(t, many, bySeq["many"][0].To)
	require.Len(t, bySeq["failing"], 1)
	require.ElementsMatch(t, []string{"ok1@dest.test", "ok2@dest.test"}, bySeq["failing"][0].To)

	require.Len(t, bounces, 1)
	b := bounces[0]
	require.Equal(t, []string{"alice@client.test"}, b.To)
	msg, err := mail.ReadMessage(bytes.NewReader(b.Data))
	require.NoError(t, err)
	require.Equal(t, "Undelivered Mail Returned to Sender", msg.Header.Get("Subject"))
	require.Equal(t, "auto-replied", msg.Header.Get("Auto-Submitted"))
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "multipart/report", mt)
	require.Equal(t, "delivery-status", params["report-type"])
	mr := multipart.NewReader(msg.Body, params["boundary"])
	text, err := mr.NextPart()
	require.NoError(t, err)
	require.Contains(t, text.Header.Get("Content-Type"), "text/plain")
	human, err := io.ReadAll(text)
	require.NoError(t, err)
	require.Contains(t, string(human), "<gone@dest.test>")

	status, err := mr.NextPart()
	require.NoError(t, err)
	require.Equal(t, "message/delivery-status", status.Header.Get("Content-Type"))
	fields := textproto.NewReader(bufio.NewReader(status))
	perMessage, err := fields.ReadMIMEHeader()
	require.NoError(t, err)
	require.Equal(t, "dns; smx.test", perMessage.Get("Reporting-MTA"))
	require.Equal(t, failing, perMessage.Get("X-Smx-Queue-Id"))
	require.NotEmpty(t, perMessage.Get("Arrival-Date"))
	perRcpt, err := fields.ReadMIMEHeader()
	if err != io.EOF {
		require.NoError(t, err)
	}
	require.Equal(t, "rfc822; gone@dest.test", perRcpt.Get("Final-Recipient"))
	require.Equal(t, "failed", perRcpt.Get("Action"))
	require.Equal(t, "5.1.1", perRcpt.Get("Status"))
	require.Equal(t, "dns; 127.0.0.1", perRcpt.Get("Remote-MTA"))
	require.Contains(t, perRcpt.Get("Diagnostic-Code"), "smtp; 550 5.1.1")
	require.Contains(t, perRcpt.Get("Diagnostic-Code"), "no mailbox here by that name")
	require.NotEmpty(t, perRcpt.Get("Last-Attempt-Date"))
	more, _ := fields.ReadMIMEHeader()
	require.Empty(t, more, "one recipient reported on")

	orig, err := mr.NextPart()
	require.NoError(t, err)
	require.Equal(t, "message/rfc822", orig.Header.Get("Content-Type"), "the first bounce returns the whole message")
	returned, err := io.ReadAll(orig)
	require.NoError(t, err)
	require.Contains(t, string(returned), "X-Seq: failing")
	require.Contains(t, string(returned), "body of failing")
	_, err = mr.NextPart()
	require.Equal(t, io.EOF, err)

	// The audit tells the same story: the failure and the DSN it caused.
	out := e.mustCtl(t, "audit", failing)
	require.Regexp(t, `1 <gone@dest.test> failed: 550 5\.1\.1`, out)
	require.Regexp(t, `DSN queued kind=failure`, out)
	require.Regexp(t, `\(DSN for `+failing+`\)`, out)
	p.stop(t)
}
