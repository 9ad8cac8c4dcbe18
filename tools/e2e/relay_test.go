package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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

// readmeCommands returns the try-it commands of the README: the swaks
// command line (continuation lines joined) and the Python program
// (unindented), exactly as a reader copies them.
func readmeCommands(t *testing.T) (swaks, python string) {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		switch {
		case strings.HasPrefix(lines[i], "    swaks ") && swaks == "":
			cmd := strings.TrimSpace(lines[i])
			for strings.HasSuffix(cmd, "\\") && i+1 < len(lines) {
				i++
				cmd = strings.TrimSuffix(cmd, "\\") + " " + strings.TrimSpace(lines[i])
			}
			swaks = cmd
		case strings.HasPrefix(lines[i], "    import smtplib") && python == "":
			var prog []string
			for ; i < len(lines) && (lines[i] == "" || strings.HasPrefix(lines[i], "    ")); i++ {
				prog = append(prog, strings.TrimPrefix(lines[i], "    "))
			}
			python = strings.TrimSpace(strings.Join(prog, "\n")) + "\n"
		}
	}
	require.NotEmpty(t, swaks, "the README's swaks command")
	require.NotEmpty(t, python, "the README's Python program")
	return swaks, python
}

// TestReadmeTryIt does what the README tells a newcomer to do after
// `make run`: smxd without -f (the embedded default: 127.0.0.1:2525, the
// queue in ./var/smx) in a fresh directory without any map file, then the
// README's swaks command and Python program exactly as written, then
// smxctl mailq and audit. Both messages get their 250, need no DNS, and
// are deferred because nothing listens on 127.0.0.1:25; mailq and audit
// say so.
func TestReadmeTryIt(t *testing.T) {
	if c, err := net.DialTimeout("tcp", "127.0.0.1:25", time.Second); err == nil {
		c.Close()
		t.Skip("a mail server listens on 127.0.0.1:25: the README's example would be delivered to it")
	}
	swaks, python := readmeCommands(t)
	require.Contains(t, swaks, "--server 127.0.0.1:2525")
	require.Contains(t, python, `smtplib.SMTP("127.0.0.1", 2525)`)

	dir := t.TempDir()
	cmd := exec.Command(bins.smxd, "run", "--allow-root") // make run, as root
	cmd.Dir = dir
	p := launchCmd(t, cmd)
	line := p.waitLine(t, `msg="smxd started"|address already in use`)
	if strings.Contains(line, "address already in use") {
		t.Skip("127.0.0.1:2525 is taken (is a `make run` going on?)")
	}
	p.waitLine(t, `func=smxd_start, .*smtps=MTA\[127\.0\.0\.1:2525\]`)

	var ids []string
	if _, err := exec.LookPath("swaks"); err == nil {
		out, err := exec.Command("sh", "-c", swaks).CombinedOutput()
		require.NoError(t, err, string(out))
		m := regexp.MustCompile(`<-  250 2\.0\.0 Message accepted for delivery, id=(S[0-9A-F]{18})`).FindStringSubmatch(string(out))
		require.NotNil(t, m, "swaks gets the 250 the README shows:\n%s", out)
		ids = append(ids, m[1])
	} else {
		t.Log("swaks not installed: its command is left out")
	}
	if py, err := exec.LookPath("python3"); err == nil {
		mark := p.mark()
		out, err := exec.Command(py, "-c", python).CombinedOutput()
		require.NoError(t, err, "send_message raises unless smxd answers 250:\n%s", out)
		line := p.waitLineFrom(t, mark, `ss_ta=S[0-9A-F]{18}, msgid=.*, stat=0`)
		m := regexp.MustCompile(`ss_ta=(S[0-9A-F]{18}), msgid=`).FindStringSubmatch(line)
		require.NotNil(t, m, line)
		ids = append(ids, m[1])
	} else {
		t.Log("python3 not installed: its program is left out")
	}
	if len(ids) == 0 {
		t.Skip("neither swaks nor python3 is installed")
	}
	// The first message finds nothing on 127.0.0.1:25; the host status
	// cache then defers the next one without a try until the retry time.
	p.waitLine(t, `ss_ta=`+ids[0]+`, rcpt=<someone@\[127\.0\.0\.1\]>, idx=0, stat=451, reply=451 4\.4\.1 connect to 127\.0\.0\.1`)
	for _, id := range ids {
		waitEvent(t, dir, id, "RcptDeferred")
	}

	ctl := func(args ...string) string {
		c := exec.Command(bins.smxctl, args...)
		c.Dir = dir
		out, err := c.CombinedOutput()
		require.NoError(t, err, string(out))
		return string(out)
	}
	const refused = `451 4\.4\.1 connect to 127\.0\.0\.1\[127\.0\.0\.1\]: connect`
	const hostDown = `not tried: esmtp:\[127\.0\.0\.1\]:25 is down`
	out := ctl("mailq")
	require.Contains(t, out, fmt.Sprintf("Total requests: %d", len(ids)))
	for i, id := range ids {
		why := refused
		if i > 0 {
			why = hostDown
		}
		require.Regexp(t, id+` +\d+ .* <you@\[127\.0\.0\.1\]>\n +<someone@\[127\.0\.0\.1\]>\n +\(Deferred: `+why, out)
	}
	for i, id := range ids {
		out = ctl("audit", id)
		require.Contains(t, out, "received from=<you@[127.0.0.1]> to=<someone@[127.0.0.1]>")
		require.Contains(t, out, "resolved mailer=esmtp dest=esmtp:[127.0.0.1]:25")
		if i == 0 {
			require.Contains(t, out, "attempt finished")
			require.Regexp(t, `0 <someone@\[127\.0\.0\.1\]> deferred code=451 enhanced=4\.4\.1 reason="`+refused+`: connection refused"`, out)
		} else {
			require.Regexp(t, `0 <someone@\[127\.0\.0\.1\]> deferred reason="`+hostDown, out)
		}
		require.Contains(t, out, "still queued")
	}
	_, err := os.Stat(filepath.Join(dir, "var", "smx", "eventlog"))
	require.NoError(t, err, "the queue is in ./var/smx")
	p.stop(t)
	require.Regexp(t, regexp.MustCompile(`func=smxd_stop`), p.output())
}

// waitEvent waits, with smxctl replay --follow in dir (the embedded
// default's queue), for an event of type typ of message id.
func waitEvent(t *testing.T, dir, id, typ string) {
	t.Helper()
	cmd := exec.Command(bins.smxctl, "replay", "--follow", "--interval", "50ms", "--msg", id, "--type", typ)
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	found := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), " "+typ+" "+id) {
				found <- true
				return
			}
		}
		found <- false
	}()
	select {
	case ok := <-found:
		require.True(t, ok, "smxctl replay --follow ended before %s of %s", typ, id)
	case <-time.After(wait):
		t.Fatalf("no %s of %s", typ, id)
	}
}
