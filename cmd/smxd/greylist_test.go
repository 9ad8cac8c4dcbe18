package main

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/smx-mta/smx/scheduler/clock"
	"github.com/smx-mta/smx/smtp/policy/greylist"
)

// TestGreylisting: with smar { greylisting } and the smtps flag
// greylisting, smxd refuses an unknown client with 421 at RCPT until
// grey_wait has passed, then accepts it. The database lives in the queue
// directory, keeps what it knows across a reload (a change of its
// section waits for a restart) and is closed at stop.
func TestGreylisting(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	td := startDaemonWith(t, daemonConfig{
		mailertable: "my.dom lmtp:\n. 2525^esmtp:[127.0.0.1]\n",
		smar:        "map users { type = hash; file = users; } local_user_map { name = users; } greylisting { grey_wait = 10m; }",
		smtps:       "flags = { greylisting };",
		files:       map[string]string{"users": "carol\n"},
		now:         clk.Now,
	})
	send := func() error {
		cl, err := gosmtp.Dial("127.0.0.1:" + strconv.Itoa(td.port))
		require.NoError(t, err)
		defer cl.Close()
		return cl.SendMail("someone@client.test", []string{"carol@my.dom"}, strings.NewReader("Subject: grey\r\n\r\nbody\r\n"))
	}
	greylisted := func(err error) {
		t.Helper()
		var se *gosmtp.SMTPError
		require.True(t, errors.As(err, &se), "%v", err)
		require.Equal(t, 421, se.Code, se.Message)
		require.Equal(t, gosmtp.EnhancedCode{4, 7, 0}, se.EnhancedCode)
	}

	greylisted(send())
	clk.Advance(9 * time.Minute)
	greylisted(send()) // grey_wait is 10m, not the default 5m
	clk.Advance(2 * time.Minute)
	require.NoError(t, send(), "retried after grey_wait")

	_, err := os.Stat(filepath.Join(td.dir, "spool", "greylist"))
	require.NoError(t, err, "main_DB_name, relative to the queue directory")

	// A reload keeps the database open with what it knows; its section
	// waits for a restart.
	file := filepath.Join(td.dir, "smx.conf")
	src, err := os.ReadFile(file)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(file, []byte(strings.Replace(string(src), "grey_wait = 10m", "grey_wait = 1m", 1)), 0o644))
	res, err := td.d.reload()
	require.NoError(t, err)
	require.Contains(t, res.NeedRestart, "smar.greylisting.grey_wait")
	require.NoError(t, send(), "still whitelisted after the reload")

	// At stop the database is closed: it opens again, whitelist kept.
	td.stop()
	g, err := greylist.Open(greylist.Options{Dir: filepath.Join(td.dir, "spool", "greylist"), Now: clk.Now})
	require.NoError(t, err, "smxd released the database")
	defer g.Close()
	r, err := g.Check(g.ClientKey(netip.MustParseAddr("127.0.0.1")))
	require.NoError(t, err)
	require.Equal(t, greylist.Pass, r)
}
