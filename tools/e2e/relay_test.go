package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRelayOneMessageEachClient follows messages from three real clients
// (swaks, Python's smtplib, go-smtp) through smxd to the sink, and then
// through smxctl's replay, audit and mailq, and the mail log.
func TestRelayOneMessageEachClient(t *testing.T) {
	t.Parallel()
	snk := newSink(t)
	e := newEnv(t, envOptions{sinkPort: snk.port})
	p := e.start(t)
	p.waitLine(t, `func=qmgr_recovery, snapshot_seq=0, events=0, last_seq=0, IQDB=0, DEFEDB=0, queued=0, duration=`)

	var ids []string
	// go-smtp
	ids = append(ids, mustSend(t, e.addr(), "alice@client.test", []string{"bob@dest.test"}, "go-smtp"))

	// swaks
	if swaks, err := exec.LookPath("swaks"); err == nil {
		out, err := exec.Command(swaks, "--server", e.addr(), "--from", "carol@client.test", "--to", "dave@dest.test",
			"--header", "X-Seq: swaks", "--body", "sent by swaks").CombinedOutput()
		require.NoError(t, err, string(out))
		m := queuedAs.FindStringSubmatch(string(out))
		require.NotNil(t, m, string(out))
		ids = append(ids, m[1])
	} else {
		t.Log("swaks not installed: that client is left out")
	}

	// Python's smtplib
	if py, err := exec.LookPath("python3"); err == nil {
		script := fmt.Sprintf(`
import smtplib
from email.message import EmailMessage
msg = EmailMessage()
msg["From"], msg["To"], msg["Subject"], msg["X-Seq"] = "erin@client.test", "frank@dest.test", "smtplib", "smtplib"
msg.set_content("sent by smtplib")
with smtplib.SMTP("127.0.0.1", %d) as s:
    s.ehlo("python.test")
    s.mail("erin@client.test")
    s.rcpt("frank@dest.test")
    code, text = s.data(msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")))
    print(code, text.decode())
`, e.port)
		out, err := exec.Command(py, "-c", script).CombinedOutput()
		require.NoError(t, err, string(out))
		require.True(t, strings.HasPrefix(string(out), "250 "), string(out))
		m := queuedAs.FindStringSubmatch(string(out))
		require.NotNil(t, m, string(out))
		ids = append(ids, m[1])
	} else {
		t.Log("python3 not installed: that client is left out")
	}

	msgs := snk.waitCount(t, len(ids))
	bySeq := map[string]sinkMsg{}
	for _, m := range msgs {
		bySeq[m.header("X-Seq")] = m
	}
	require.Contains(t, bySeq, "go-smtp")
	require.Equal(t, "alice@client.test", bySeq["go-smtp"].From)
	require.Equal(t, []string{"bob@dest.test"}, bySeq["go-smtp"].To)
	require.Contains(t, bySeq["go-smtp"].header("Received"), "smx.test", "smxd adds its Received: field")
	require.Contains(t, string(bySeq["go-smtp"].Data), "body of go-smtp")

	// The mail log: the session, the transaction and the delivery of
	// each message.
	for _, id := range ids {
		p.waitLine(t, `ss_ta=`+id+`, msgid=`)
		p.waitLine(t, `da_ta=C[0-9A-F]+, ss_ta=`+id+`, rcpt=<\S+@dest.test>, idx=0, stat=0, reply=250 `)
	}

	// smxctl replay: every transition of the first message, in order.
	out := e.mustCtl(t, "replay", "--msg", ids[0])
	var types []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		require.GreaterOrEqual(t, len(f), 3, line)
		types = append(types, f[2])
	}
	require.Equal(t, []string{"TxnReceived", "RcptResolved", "AttemptStarted", "AttemptFinished", "RcptDelivered"}, types[:5], out)

	// smxctl audit: the story of the message.
	out = e.mustCtl(t, "audit", ids[0])
	require.Contains(t, out, "from=<alice@client.test>")
	require.Regexp(t, `delivered`, out)

	// smxctl mailq: delivered mail has left the queue.
	out = e.mustCtl(t, "mailq")
	for _, id := range ids {
		require.NotContains(t, out, id)
	}

	// A clean stop writes a snapshot, and the next start replays nothing
	// before it.
	p.stop(t)
	p.waitLine(t, `func=qmgr_snapshot, seq=\d+, when=stop`)
	p.waitLine(t, `func=smxd_stop`)
	p = e.start(t)
	line := p.waitLine(t, `func=qmgr_recovery`)
	require.Regexp(t, `snapshot_seq=[1-9]\d*, events=\d+, .*queued=0`, line)
	p.stop(t)
}

// TestEmbeddedDefault runs smxd as `make run` does, without -f, in a fresh
// directory: it listens on 127.0.0.1:2525 and keeps its queue in
// ./var/smx. A message sent with swaks is queued and visible with smxctl
// mailq and smxctl audit, both without -f too. The directory's mailertable
// (the default file name, "mt") sends everything to a port where nothing
// listens, so that no DNS question leaves the machine and the message
// stays queued.
func TestEmbeddedDefault(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "mt"), []byte(fmt.Sprintf(". %d^esmtp:[127.0.0.1]\n", freePort(t))), 0o644))
	cmd := exec.Command(bins.smxd, "run", "--allow-root")
	cmd.Dir = dir
	p := launchCmd(t, cmd)
	line := p.waitLine(t, `msg="smxd started"|address already in use`)
	if strings.Contains(line, "address already in use") {
		t.Skip("127.0.0.1:2525 is taken (is a `make run` going on?)")
	}
	id := mustSend(t, "127.0.0.1:2525", "you@example.org", []string{"someone@example.net"}, "default")
	p.waitLine(t, `ss_ta=`+id+`, rcpt=<someone@example.net>, idx=0, stat=451`)

	ctl := func(args ...string) string {
		c := exec.Command(bins.smxctl, args...)
		c.Dir = dir
		out, err := c.CombinedOutput()
		require.NoError(t, err, string(out))
		return string(out)
	}
	out := ctl("mailq")
	require.Contains(t, out, id)
	require.Contains(t, out, "<someone@example.net>")
	require.Regexp(t, `Deferred: 451`, out)
	out = ctl("audit", id)
	require.Contains(t, out, "from=<you@example.org>")
	require.Contains(t, out, "still queued")
	_, err := os.Stat(filepath.Join(dir, "var", "smx", "eventlog"))
	require.NoError(t, err, "the queue is in ./var/smx")
	p.stop(t)
	require.Regexp(t, regexp.MustCompile(`func=smxd_stop`), p.output())
}
