package maillog

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// memSink keeps the lines it is given.
type memSink struct {
	mu    sync.Mutex
	lines []string
	lvls  []Level
}

func (m *memSink) WriteLine(e Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lines = append(m.lines, string(e.Fields))
	m.lvls = append(m.lvls, e.Level)
	return nil
}

func TestEscapeSeedExample(t *testing.T) {
	// Seed 001, "Logfile Format".
	require.Equal(t, "550 5.7.1 no%2C not now%2C 99%25 usage", Escape("550 5.7.1 no, not now, 99% usage"))
}

func TestEscapeEveryByte(t *testing.T) {
	for c := 0; c < 256; c++ {
		s := string([]byte{byte(c)})
		got := Escape(s)
		printable := c >= 0x20 && c < 0x7F && c != ',' && c != '%'
		if printable {
			require.Equal(t, s, got, "byte %#x", c)
		} else {
			require.Len(t, got, 3, "byte %#x", c)
			require.Equal(t, byte('%'), got[0])
			require.Equal(t, strings.ToUpper(got), got)
		}
		back, err := Unescape(got)
		require.NoError(t, err)
		require.Equal(t, s, back)
	}
	// Log injection: a CRLF and a fake field stay inside one value.
	require.Equal(t, "a%0D%0Ass_sess=x%2C b", Escape("a\r\nss_sess=x, b"))
	require.Equal(t, "caf%C3%A9", Escape("café"))
}

func TestUnescapeErrors(t *testing.T) {
	for _, in := range []string{"%", "%2", "abc%2", "%G0", "%0G", "x%zz"} {
		_, err := Unescape(in)
		require.ErrorIs(t, err, ErrBadEscape, in)
	}
	s, err := Unescape("no%2c lower%2C")
	require.NoError(t, err)
	require.Equal(t, "no, lower,", s)
}

func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "550 5.7.1 no, not now, 99% usage", "a\r\nb", "café", "%%", "%2C"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Escape(s)
		for i := 0; i < len(e); i++ {
			c := e[i]
			if c < 0x20 || c >= 0x7F || c == ',' {
				t.Fatalf("Escape(%q) = %q contains %#x", s, e, c)
			}
		}
		back, err := Unescape(e)
		if err != nil || back != s {
			t.Fatalf("Unescape(Escape(%q)) = %q, %v", s, back, err)
		}
		// Unescape of arbitrary input must not panic.
		_, _ = Unescape(s)
	})
}

func TestSeedServerSession(t *testing.T) {
	// The SMTP server example of seed 001 "Logfile Format", line by line.
	sink := &memSink{}
	lg := New(Options{Sink: sink})
	const sess, ta = "S00000000407EAE3800", "S00000000407EAE4E00"
	lg.ServerSession(sess).Client(netip.MustParseAddr("127.0.0.1"), "localhost.endmail.org.").Write()
	lg.ServerSession(sess).Where("connection").Str(FieldStartTLS, "successful").Write()
	lg.ServerTxn(sess, ta).Mail("SENDER@meta1.org").Stat(250).Write()
	lg.ServerTxn(sess, ta).Rcpt("RECIPIENT@meta1.org").Idx(0).Stat(0).Write()
	lg.ServerTxn(sess, ta).Rcpt("SOMEONE@SOME.DOMAIN").Idx(1).Stat(0).Write()
	lg.ServerTxn(sess, ta).MsgID("<20040916050457.GG54961@endmail.org>").Size(1177).Stat(250).Write()
	require.Equal(t, []string{
		"ss_sess=S00000000407EAE3800, client_ipv4=127.0.0.1, client_name=localhost.endmail.org.",
		"ss_sess=S00000000407EAE3800, where=connection, starttls=successful",
		"ss_sess=S00000000407EAE3800, ss_ta=S00000000407EAE4E00, mail=<SENDER@meta1.org>, stat=0",
		"ss_sess=S00000000407EAE3800, ss_ta=S00000000407EAE4E00, rcpt=<RECIPIENT@meta1.org>, idx=0, stat=0",
		"ss_sess=S00000000407EAE3800, ss_ta=S00000000407EAE4E00, rcpt=<SOMEONE@SOME.DOMAIN>, idx=1, stat=0",
		"ss_sess=S00000000407EAE3800, ss_ta=S00000000407EAE4E00, msgid=<20040916050457.GG54961@endmail.org>, size=1177, stat=0",
	}, sink.lines)
}

func TestSeedClientSession(t *testing.T) {
	sink := &memSink{}
	lg := New(Options{Sink: sink})
	const da, dta, ssta = "C01000006C800000002", "C01000006C900000002", "S00000000407EAE4E00"
	lg.ClientSession(da).Status("connected").Port(25).Addr(FieldAddr, netip.MustParseAddr("64.81.247.36")).Write()
	lg.ClientTxn(da, dta, ssta).Mail("SENDER@meta1.org").Stat(250).Reply("250 2.5.0 MAIL command succeeded").Write()
	lg.ClientTxn(da, dta, ssta).Rcpt("RECIPIENT@meta1.org").Stat(250).Reply("250 2.1.5 RCPT ok").Write()
	lg.ClientTxn(da, dta, ssta).Where("final_dot").Size(1177).Stat(250).Write()
	lg.Recipient("q_upd_rcpt_ok", ssta, 0).Rcpt("RECIPIENT@meta1.org").XDelay(0).Delay(1500 * time.Millisecond).Write()
	lg.ClientTxn(da, dta, ssta).Rcpt("x@y").Stat(550).Reply("550 5.7.1 no, not now, 99% usage").
		Relay("mx.example", netip.MustParseAddr("192.0.2.1")).Write()
	require.Equal(t, []string{
		"da_sess=C01000006C800000002, status=connected, port=25, addr=64.81.247.36",
		"da_sess=C01000006C800000002, da_ta=C01000006C900000002, ss_ta=S00000000407EAE4E00, mail=<SENDER@meta1.org>, stat=0, reply=250 2.5.0 MAIL command succeeded",
		"da_sess=C01000006C800000002, da_ta=C01000006C900000002, ss_ta=S00000000407EAE4E00, rcpt=<RECIPIENT@meta1.org>, stat=0, reply=250 2.1.5 RCPT ok",
		"da_sess=C01000006C800000002, da_ta=C01000006C900000002, ss_ta=S00000000407EAE4E00, where=final_dot, size=1177, stat=0",
		"func=q_upd_rcpt_ok, rcpt_id=S00000000407EAE4E00-000000, rcpt=<RECIPIENT@meta1.org>, xdelay=0, delay=1",
		"da_sess=C01000006C800000002, da_ta=C01000006C900000002, ss_ta=S00000000407EAE4E00, rcpt=<x@y>, stat=550, reply=550 5.7.1 no%2C not now%2C 99%25 usage, relay=mx.example [192.0.2.1]",
	}, sink.lines)
}

func TestUntrustedAddressesAreEscaped(t *testing.T) {
	sink := &memSink{}
	lg := New(Options{Sink: sink})
	lg.ServerTxn("S1", "S2").Mail("evil,stat=0@x\n").Rcpt("").Client(netip.MustParseAddr("::ffff:10.0.0.1"), "").Write()
	lg.ServerSession("S1").Client(netip.MustParseAddr("2001:db8::1"), "h,x").Write()
	require.Equal(t, "ss_sess=S1, ss_ta=S2, mail=<evil%2Cstat=0@x%0A>, rcpt=<>, client_ipv4=10.0.0.1", sink.lines[0])
	require.Equal(t, "ss_sess=S1, client_ipv6=2001:db8::1, client_name=h%2Cx", sink.lines[1])
}

func TestLevels(t *testing.T) {
	sink := &memSink{}
	lg := New(Options{Sink: sink, Level: 9})
	lg.Line(LevelCrit).Str("a", "1").Write()
	lg.Line(LevelError).Str("a", "2").Write()
	lg.Line(LevelWarning).Str("a", "3").Write()
	lg.Line(LevelNotice).Str("a", "4").Write()
	lg.Line(LevelInfo).Str("a", "5").Write()
	lg.Line(LevelDetail).Str("a", "6").Write() // above log_level 9: dropped
	require.Nil(t, lg.Line(LevelDebug))
	require.Equal(t, []string{"sev=CRIT, a=1", "sev=ERR, a=2", "sev=WARN, a=3", "a=4", "a=5"}, sink.lines)

	quiet := New(Options{Sink: sink, Level: LevelError})
	require.False(t, quiet.Enabled(LevelInfo))
	require.True(t, quiet.Enabled(LevelError))
	// A nil line (disabled) accepts every method and writes nothing.
	quiet.ServerTxn("S", "T").Mail("a").Rcpt("b").Stat(1).Reply("r").Size(1).Delay(1).XDelay(1).
		Relay("h", netip.Addr{}).Port(1).Bool("b", true).Uint("u", 1).Bytes("x", nil).Write()
	require.Len(t, sink.lines, 5)
	// The default level is the seed's 9.
	require.True(t, New(Options{Sink: sink}).Enabled(9))
	require.False(t, New(Options{Sink: sink}).Enabled(10))
	require.False(t, Discard().Enabled(LevelCrit))
}

func TestWriterSinkFormat(t *testing.T) {
	var buf bytes.Buffer
	at := time.Date(2024, 3, 1, 12, 30, 45, 123456000, time.UTC)
	lg := New(Options{Sink: NewWriterSink(&buf), Ident: "smx-MTA", Now: func() time.Time { return at }})
	lg.ServerSession("S00000000407EAE3800").Where("connection").Write()
	require.Equal(t, "2024-03-01T12:30:45.123456Z smx-MTA: ss_sess=S00000000407EAE3800, where=connection\n", buf.String())
}

func TestFileSinkReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "maillog")
	sink, err := OpenFileSink(path)
	require.NoError(t, err)
	defer sink.Close()
	lg := New(Options{Sink: sink, Ident: "smx"})
	lg.Line(LevelInfo).Str("n", "1").Write()
	// Rotation: the file is renamed, then smxd is told to reopen.
	require.NoError(t, os.Rename(path, path+".0"))
	lg.Line(LevelInfo).Str("n", "2").Write() // still goes to the renamed file
	require.NoError(t, sink.Reopen())
	lg.Line(LevelInfo).Str("n", "3").Write()

	old, err := os.ReadFile(path + ".0")
	require.NoError(t, err)
	cur, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, 2, strings.Count(string(old), "\n"))
	require.Contains(t, string(old), "smx: n=2\n")
	require.Equal(t, 1, strings.Count(string(cur), "\n"))
	require.Contains(t, string(cur), "smx: n=3\n")

	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), st.Mode().Perm())

	require.NoError(t, sink.Close())
	require.Error(t, sink.WriteLine(Entry{}))
}

func TestFileSinkConcurrentLinesDoNotTear(t *testing.T) {
	path := filepath.Join(t.TempDir(), "maillog")
	sink, err := OpenFileSink(path)
	require.NoError(t, err)
	defer sink.Close()
	lg := New(Options{Sink: sink})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				lg.ServerTxn("S00000000407EAE3800", "S00000000407EAE4E00").Rcpt(strings.Repeat("x", 100)).Idx(i).Stat(0).Write()
			}
		}(w)
	}
	wg.Wait()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		require.Regexp(t, `^\S+ ss_sess=S00000000407EAE3800, ss_ta=S00000000407EAE4E00, rcpt=<x{100}>, idx=\d+, stat=0$`, sc.Text())
	}
	require.Equal(t, 1600, n)
}

func TestFileSinkOpenError(t *testing.T) {
	_, err := OpenFileSink(filepath.Join(t.TempDir(), "no", "such", "dir", "log"))
	require.Error(t, err)
	require.Contains(t, err.Error(), "maillog: open")
}

func TestSyslogSink(t *testing.T) {
	// A real syslog(3)-style datagram socket stands in for /dev/log.
	addr := filepath.Join(t.TempDir(), "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	require.NoError(t, err)
	defer conn.Close()

	var perror bytes.Buffer
	sink, err := OpenSyslogSink(SyslogOptions{Facility: "local3", Ident: "smX-MTA", Options: []string{"pid", "perror"},
		Network: "unixgram", Address: addr, Stderr: &perror})
	require.NoError(t, err)
	defer sink.Close()
	lg := New(Options{Sink: sink, Ident: "ignored"})
	lg.ServerSession("S00000000407EAE3800").Where("connection").Write()
	lg.Line(LevelError).Str("func", "cdb_write").Str("reply", "disk full, 100%").Write()

	read := func() string {
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
		buf := make([]byte, 2048)
		n, err := conn.Read(buf)
		require.NoError(t, err)
		return string(buf[:n])
	}
	// <PRI> is facility*8 + severity: local3 = 19, info = 6, err = 3.
	msg := read()
	require.True(t, strings.HasPrefix(msg, "<158>"), msg)
	require.Contains(t, msg, "smX-MTA[")
	require.True(t, strings.HasSuffix(strings.TrimSpace(msg), "ss_sess=S00000000407EAE3800, where=connection"), msg)
	msg = read()
	require.True(t, strings.HasPrefix(msg, "<155>"), msg)
	require.Contains(t, msg, "sev=ERR, func=cdb_write, reply=disk full%2C 100%25")
	require.Contains(t, perror.String(), "sev=ERR, func=cdb_write")

	_, err = OpenSyslogSink(SyslogOptions{Facility: "nosuch", Network: "unixgram", Address: addr})
	require.ErrorContains(t, err, `unknown syslog facility "nosuch"`)
	_, err = OpenSyslogSink(SyslogOptions{Options: []string{"pidd"}, Network: "unixgram", Address: addr})
	require.ErrorContains(t, err, `unknown syslog option "pidd"`)
}

func TestSlogHandler(t *testing.T) {
	sink := &memSink{}
	lg := New(Options{Sink: sink})
	sl := slog.New(lg.Handler())
	sl.Info("", "ss_sess", "S1", "size", 1177, "ok", true)
	sl.With("func", "smxd_start").WithGroup("conf").Warn("config, reloaded", "file", "/etc/smx/smx.conf", "age", 90*time.Second)
	sl.Debug("not written at log_level 9")
	sl.Error("boom", slog.Group("peer", "ip", "192.0.2.1", "port", uint64(25)))
	require.Equal(t, []string{
		"ss_sess=S1, size=1177, ok=1",
		"sev=WARN, msg=config%2C reloaded, func=smxd_start, conf.file=/etc/smx/smx.conf, conf.age=90",
		"sev=ERR, msg=boom, peer.ip=192.0.2.1, peer.port=25",
	}, sink.lines)
	require.Equal(t, []Level{LevelInfo, LevelWarning, LevelError}, sink.lvls)
}

type failSink struct{}

func (failSink) WriteLine(Entry) error { return io.ErrShortWrite }

func TestSinkErrorsReported(t *testing.T) {
	var got []error
	lg := New(Options{Sink: failSink{}, OnError: func(err error) { got = append(got, err) }})
	lg.Line(LevelInfo).Str("a", "b").Write()
	require.Equal(t, []error{io.ErrShortWrite}, got)
}

// A typical server transaction line, rendered and handed to a sink that
// keeps nothing.
func BenchmarkTransactionLine(b *testing.B) {
	lg := New(Options{Sink: discardSink{}})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		lg.ServerTxn("S00000000407EAE3800", "S00000000407EAE4E00").
			MsgID("<20040916050457.GG54961@endmail.org>").Size(1177).Stat(250).Write()
	}
}

// A client recipient line whose reply needs escaping.
func BenchmarkDeliveryLineEscaped(b *testing.B) {
	lg := New(Options{Sink: discardSink{}})
	ip := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		lg.ClientTxn("C01000006C800000002", "C01000006C900000002", "S00000000407EAE4E00").
			Rcpt("someone@example.com").Stat(451).Reply("451 4.7.1 no, not now, 99% usage").
			Relay("mx.example.com", ip).XDelay(time.Second).Delay(3 * time.Second).Write()
	}
}

// The same line through the file format (time stamp and ident) to a
// writer that keeps nothing: the full cost except the write(2).
func BenchmarkDeliveryLineWriterSink(b *testing.B) {
	lg := New(Options{Sink: NewWriterSink(io.Discard), Ident: "smx-smtpc"})
	ip := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		lg.ClientTxn("C01000006C800000002", "C01000006C900000002", "S00000000407EAE4E00").
			Rcpt("someone@example.com").Stat(250).Reply("250 2.1.5 ok").
			Relay("mx.example.com", ip).XDelay(time.Second).Delay(3 * time.Second).Write()
	}
}

// Parallel writers to one file: the lock and the write(2) per line.
func BenchmarkFileSinkParallel(b *testing.B) {
	sink, err := OpenFileSink(filepath.Join(b.TempDir(), "maillog"))
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	lg := New(Options{Sink: sink, Ident: "smx-MTA"})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			lg.ServerTxn("S00000000407EAE3800", "S00000000407EAE4E00").Rcpt("someone@example.com").Idx(0).Stat(0).Write()
		}
	})
}

func BenchmarkDisabledLine(b *testing.B) {
	lg := New(Options{Sink: discardSink{}, Level: LevelError})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		lg.ServerTxn("S00000000407EAE3800", "S00000000407EAE4E00").Rcpt("someone@example.com").Idx(0).Stat(0).Write()
	}
}

func BenchmarkSlogHandler(b *testing.B) {
	sl := slog.New(New(Options{Sink: discardSink{}}).Handler())
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		sl.LogAttrs(nil, slog.LevelInfo, "", slog.String("ss_sess", "S00000000407EAE3800"),
			slog.String("ss_ta", "S00000000407EAE4E00"), slog.Int("size", 1177), slog.Int("stat", 0))
	}
}

type discardSink struct{}

func (discardSink) WriteLine(Entry) error { return nil }
