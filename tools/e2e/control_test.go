package e2e

import (
	"bufio"
	"encoding/json"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smx-mta/smx/cmd/smxd/control"
)

// slowDomain is refused by the sink with 451 while slow is true.
func slowSink(t *testing.T) (*sink, func(bool)) {
	snk := newSink(t)
	set := func(on bool) {
		if on {
			snk.setRcpt(func(addr string) error {
				if strings.HasSuffix(addr, "@slow.test") {
					return tempfail(addr)
				}
				return nil
			})
		} else {
			snk.setRcpt(nil)
		}
	}
	set(true)
	return snk, set
}

func status(t *testing.T, e *env) control.Status {
	t.Helper()
	var st control.Status
	require.NoError(t, json.Unmarshal([]byte(e.mustCtl(t, "status", "--json")), &st))
	return st
}

// TestControlCommands runs every smxctl command that uses the control
// socket against a running smxd, and ETRN, and checks their effect in the
// sink, the mail log and the event log (smxctl audit).
func TestControlCommands(t *testing.T) {
	t.Parallel()
	snk, slow := slowSink(t)
	e := newEnv(t, envOptions{sinkPort: snk.port})
	p := e.start(t)

	a := mustSend(t, e.addr(), "alice@client.test", []string{"x@slow.test", "y@slow.test"}, "A")
	p.waitLine(t, `ss_ta=`+a+`, rcpt=<x@slow.test>, idx=0, stat=451`)
	p.waitLine(t, `ss_ta=`+a+`, rcpt=<y@slow.test>, idx=1, stat=451`)
	b := mustSend(t, e.addr(), "alice@client.test", []string{"w@slow.test"}, "B")
	p.waitLine(t, `ss_ta=`+b+`, rcpt=<w@slow.test>, idx=0, stat=451`)

	// status
	st := status(t, e)
	require.Equal(t, 3, st.Queue.DEFEDB, "%+v", st.Queue)
	require.Equal(t, uint64(2), st.Totals.Transactions)
	require.Equal(t, "normal", st.Load)
	require.Equal(t, "smx.test", st.Hostname)
	require.Greater(t, st.Disk.Total, int64(0))
	require.GreaterOrEqual(t, st.Totals.Deferred, uint64(3))
	var names []string
	for _, c := range st.Components {
		require.True(t, c.Running, c.Name)
		names = append(names, c.Name)
	}
	require.Equal(t, []string{"storage", "smar", "qmgr", "smtps MTA", "control", "metrics"}, names)
	out := e.mustCtl(t, "status")
	require.Regexp(t, `queues\s+IQDB 0/\d+  AQ \d+/\d+  DEFEDB 3`, out)
	require.Contains(t, out, "smtps MTA")

	// hold and release, with the operator's name in the event
	who, err := user.Current()
	require.NoError(t, err)
	out = e.mustCtl(t, "hold", a, "--reason", "looks odd")
	require.Equal(t, "hold "+a+": done (operator "+who.Username+")\n", out)
	p.waitLine(t, `func=qmgr_ctl, action=hold, operator=`+who.Username+`, pid=\d+, ss_ta=`+a+`, reason=looks odd`)
	require.Contains(t, e.mustCtl(t, "audit", a), `held by operator user=`+who.Username+` reason="looks odd"`)
	e.mustCtl(t, "release", a)
	p.waitLine(t, `func=qmgr_ctl, action=release, operator=`+who.Username)

	// redirect: the recipient goes elsewhere, and the new one is
	// delivered
	out = e.mustCtl(t, "redirect", a+":0", "<z@ok.test>")
	require.Contains(t, out, "redirect "+a+":0 to <z@ok.test>: done")
	snk.waitFor(t, "the redirected recipient", func(ms []sinkMsg) bool {
		for _, m := range ms {
			if len(m.To) == 1 && m.To[0] == "z@ok.test" && m.header("X-Seq") == "A" {
				return true
			}
		}
		return false
	})

	// redirect of a whole message: its queued recipients are finished and
	// one new recipient takes their places, delivered once
	r := mustSend(t, e.addr(), "alice@client.test", []string{"p@slow.test", "q@slow.test"}, "R")
	p.waitLine(t, `ss_ta=`+r+`, rcpt=<q@slow.test>, idx=1, stat=451`)
	out = e.mustCtl(t, "redirect", r, "<all@ok.test>", "--reason", "moved")
	require.Equal(t, "redirect "+r+" to <all@ok.test>: done (operator "+who.Username+")\n", out)
	p.waitLine(t, `func=qmgr_ctl, action=redirect, operator=`+who.Username+`, pid=\d+, ss_ta=`+r+`, new_rcpt=all@ok.test, reason=moved`)
	snk.waitFor(t, "the redirected message", func(ms []sinkMsg) bool {
		for _, m := range ms {
			if m.header("X-Seq") == "R" && len(m.To) == 1 && m.To[0] == "all@ok.test" {
				return true
			}
		}
		return false
	})
	audit := e.mustCtl(t, "audit", r)
	require.Contains(t, audit, `redirected by operator to=2:<all@ok.test> user=`+who.Username+` reason=moved`)
	for _, m := range snk.messages() {
		if m.header("X-Seq") == "R" {
			require.Equal(t, []string{"all@ok.test"}, m.To, "only the new recipient is delivered")
		}
	}
	out, err = e.ctl(t, "redirect", r+":0", "<again@ok.test>")
	require.Error(t, err, "p is redirected already")
	require.Regexp(t, "nothing queued to redirect|no such message", out, "redirected, or delivered and gone")

	// requeue one recipient: it is tried again at once
	mark := p.mark()
	e.mustCtl(t, "requeue", a+":1")
	p.waitLineFrom(t, mark, `ss_ta=`+a+`, rcpt=<y@slow.test>, idx=1, stat=451`)

	// flush --msg: one recipient, tried again at once
	mark = p.mark()
	out = e.mustCtl(t, "flush", "--msg", a+":1", "--reason", "try y now")
	require.Equal(t, "requeued 1 recipient(s)\n", out)
	p.waitLineFrom(t, mark, `func=qmgr_ctl, action=flush, operator=`+who.Username+`, pid=\d+, ss_ta=`+a+`, idx=1, reason=try y now`)
	p.waitLineFrom(t, mark, `ss_ta=`+a+`, rcpt=<y@slow.test>, idx=1, stat=451`)

	// flush --domain, and ETRN, which does the same
	mark = p.mark()
	out = e.mustCtl(t, "flush", "--domain", "slow.test")
	require.Regexp(t, `requeued [12] recipient\(s\)`, out)
	p.waitLineFrom(t, mark, `rcpt=<y@slow.test>, idx=1, stat=451`)
	mark = p.mark()
	etrn(t, e.addr(), "slow.test")
	p.waitLineFrom(t, mark, `rcpt=<\S+@slow.test>, idx=\d, stat=451`)

	// delete: B leaves the queue without a bounce
	e.mustCtl(t, "delete", b)
	p.waitLine(t, `func=qmgr_ctl, action=delete, operator=`+who.Username+`, pid=\d+, ss_ta=`+b)

	// flush everything once the sink takes the mail
	slow(false)
	out = e.mustCtl(t, "flush")
	require.Regexp(t, `requeued \d+ recipient\(s\)`, out)
	snk.waitFor(t, "y@slow.test", func(ms []sinkMsg) bool {
		for _, m := range ms {
			if len(m.To) == 1 && m.To[0] == "y@slow.test" {
				return true
			}
		}
		return false
	})
	out = e.mustCtl(t, "mailq")
	require.NotContains(t, out, a)
	require.NotContains(t, out, b)
	for _, m := range snk.messages() {
		require.NotEqual(t, "B", m.header("X-Seq"), "a deleted message is not delivered")
	}
	require.Contains(t, e.mustCtl(t, "audit", b), "delete")

	// an unknown message is an error with a reason
	out, err = e.ctl(t, "hold", "S0000000000000000FF")
	require.Error(t, err)
	require.Contains(t, out, "no such message")
	out, err = e.ctl(t, "hold", "S1:x")
	require.Error(t, err)
	require.Contains(t, out, "the recipient index after ':' must be a number")

	// reload and config dump
	out = e.mustCtl(t, "reload")
	require.Contains(t, out, "reloaded: smar, map mailertable")
	p.waitLine(t, `func=smxd_reload, reloaded=smar`)
	out = e.mustCtl(t, "config", "dump")
	require.Contains(t, out, `hostname = "smx.test";`)
	require.Contains(t, out, "queue_directory = \""+e.spool+"\";")
	require.Contains(t, out, "retry_min_delay = 1s;")

	// restart: the queue manager recovers again; the storage takes its
	// dependents with it. Mail flows after each.
	out = e.mustCtl(t, "restart", "qmgr")
	require.Equal(t, "restarted: qmgr\n", out)
	p.waitLine(t, `func=component_restart, component=qmgr, with=qmgr`)
	mustSend(t, e.addr(), "alice@client.test", []string{"c@ok.test"}, "C")
	snk.waitFor(t, "C", hasSeq("C"))
	out = e.mustCtl(t, "restart", "storage")
	require.Equal(t, "restarted: storage, qmgr, smtps MTA\n", out)
	p.waitLine(t, `func=component_restart, component=storage, with=storage;qmgr;smtps MTA`)
	mustSend(t, e.addr(), "alice@client.test", []string{"d@ok.test"}, "D")
	snk.waitFor(t, "D", hasSeq("D"))
	st = status(t, e)
	for _, c := range st.Components {
		switch c.Name {
		case "qmgr":
			require.Equal(t, 2, c.Restarts)
		case "storage", "smtps MTA":
			require.Equal(t, 1, c.Restarts, c.Name)
		}
		require.True(t, c.Running, c.Name)
	}
	_, err = e.ctl(t, "restart", "nonesuch")
	require.Error(t, err)

	p.stop(t)
	// smxctl without a daemon says so.
	out, err = e.ctl(t, "status")
	require.Error(t, err)
	require.Contains(t, out, "is smxd running")
}

func hasSeq(seq string) func([]sinkMsg) bool {
	return func(ms []sinkMsg) bool {
		for _, m := range ms {
			if m.header("X-Seq") == seq {
				return true
			}
		}
		return false
	}
}

// etrn sends ETRN domain and requires a 2xx reply.
func etrn(t *testing.T, addr, domain string) {
	t.Helper()
	c, err := textproto.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, _, err = c.ReadResponse(220)
	require.NoError(t, err)
	id, err := c.Cmd("EHLO client.test")
	require.NoError(t, err)
	c.StartResponse(id)
	_, _, err = c.ReadResponse(250)
	c.EndResponse(id)
	require.NoError(t, err)
	id, err = c.Cmd("ETRN %s", domain)
	require.NoError(t, err)
	c.StartResponse(id)
	code, msg, err := c.ReadResponse(2)
	c.EndResponse(id)
	require.NoError(t, err, "%d %s", code, msg)
	c.Cmd("QUIT")
}

// TestControlSocketRefusals: garbage gets an error and a closed
// connection; a user other than smxd's and root is refused, by the
// socket's permissions and, should those be loosened, by SO_PEERCRED.
func TestControlSocketRefusals(t *testing.T) {
	t.Parallel()
	snk := newSink(t)
	e := newEnv(t, envOptions{sinkPort: snk.port})
	p := e.start(t)

	fi, err := os.Stat(e.control)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	for _, garbage := range []string{"GET / HTTP/1.0\r\n\r\n", "\x00\xff\xfe\n", `{"command":"status","sudo":true}` + "\n"} {
		c, err := net.Dial("unix", e.control)
		require.NoError(t, err)
		c.SetDeadline(time.Now().Add(wait))
		_, err = c.Write([]byte(garbage))
		require.NoError(t, err)
		r := bufio.NewReader(c)
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		var resp control.Response
		require.NoError(t, json.Unmarshal([]byte(line), &resp))
		require.False(t, resp.OK)
		require.Contains(t, resp.Error, "bad request")
		_, err = r.ReadString('\n')
		require.Error(t, err, "the connection is closed after garbage")
		c.Close()
	}
	require.Equal(t, "normal", status(t, e).Load, "smxd answers after garbage")

	if os.Geteuid() != 0 {
		p.stop(t)
		t.Skip("not root: cannot run smxctl as another user")
	}
	uid, gid := testUser(t)
	// The other user must be able to read the configuration.
	require.NoError(t, os.Chmod(e.dir, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(e.dir), 0o755))
	runAs := func() (string, error) {
		cmd := exec.Command(bins.smxctl, "-f", e.conf, "status")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := runAs()
	require.Error(t, err, out)
	require.Contains(t, out, "permission denied")

	// Loosen the socket file and its directory: the daemon still refuses
	// the peer by its credentials.
	require.NoError(t, os.Chmod(e.spool, 0o755))
	require.NoError(t, os.Chmod(e.control, 0o666))
	out, err = runAs()
	require.Error(t, err, out)
	require.Contains(t, out, "permission denied: "+testUserName+" (uid "+strconv.Itoa(uid)+") may not use the control socket of smxd (uid 0)")
	p.waitLine(t, `msg="control: refused" component=control uid=`+strconv.Itoa(uid))
	p.stop(t)
}

const testUserName = "smxe2e"

// testUser returns the uid and gid of an unprivileged user for the tests,
// creating it when it does not exist.
func testUser(t *testing.T) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(testUserName)
	if err != nil {
		useradd, lerr := exec.LookPath("useradd")
		if lerr != nil {
			useradd = "/usr/sbin/useradd"
		}
		out, err := exec.Command(useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", testUserName).CombinedOutput()
		if err != nil {
			t.Skipf("cannot create a test user: %v: %s", err, out)
		}
		u, err = user.Lookup(testUserName)
		require.NoError(t, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}
