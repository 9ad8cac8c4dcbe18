package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// config is the command line.
type config struct {
	server   string
	sessions int
	messages int
	size     int
	rcpts    int
	perConn  int
	from, to string
	helo     string
	timeout  time.Duration
	json     bool
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	var size string
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.server, "server", "127.0.0.1:2525", "the SMTP server, a loopback address:port")
	fs.IntVar(&c.sessions, "sessions", 10, "concurrent SMTP sessions")
	fs.IntVar(&c.messages, "messages", 1000, "messages to send in all")
	fs.StringVar(&size, "size", "5KB", "size of each message, header included (B, KB or MB)")
	fs.IntVar(&c.rcpts, "rcpts", 1, "recipients per message")
	fs.IntVar(&c.perConn, "per-conn", 1, "messages per connection before QUIT (0: all of a session's messages over one)")
	fs.StringVar(&c.from, "from", "load@loadgen.test", "envelope sender")
	fs.StringVar(&c.to, "to", "rcpt%d@dest.test", "recipient; %d is replaced by the recipient's number within the message")
	fs.StringVar(&c.helo, "helo", "loadgen.test", "EHLO name")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "give up on what is not sent by then (0: no limit)")
	fs.BoolVar(&c.json, "json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	n, err := parseSize(size)
	if err != nil {
		return c, fmt.Errorf("-size: %w", err)
	}
	c.size = n
	switch {
	case c.sessions < 1:
		return c, errors.New("-sessions must be at least 1")
	case c.messages < 0:
		return c, errors.New("-messages must not be negative")
	case c.rcpts < 1:
		return c, errors.New("-rcpts must be at least 1")
	case c.perConn < 0:
		return c, errors.New("-per-conn must not be negative")
	}
	if err := checkLoopback(c.server); err != nil {
		return c, fmt.Errorf("-server: %w", err)
	}
	return c, nil
}

// parseSize reads "5120", "5KB", "1MB".
func parseSize(s string) (int, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := 1
	for _, u := range []struct {
		suffix string
		n      int
	}{{"KB", 1 << 10}, {"MB", 1 << 20}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.n
			break
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 0 || n > 1<<30/mult {
		return 0, fmt.Errorf("%q: expected a size such as 5120, 5KB or 1MB", s)
	}
	return n * mult, nil
}

// checkLoopback refuses servers that are not on a loopback address: the
// tools send no traffic anywhere else.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: loadgen sends to loopback addresses only", addr)
	}
	return nil
}

// report is the outcome of a run.
type report struct {
	Messages   int     `json:"messages"`
	Accepted   int     `json:"accepted"`
	Failed     int     `json:"failed"`
	Recipients int     `json:"recipients"`
	Bytes      int64   `json:"bytes"`
	Sessions   int     `json:"sessions"`
	Elapsed    float64 `json:"elapsed_seconds"`
	Rate       float64 `json:"rate_per_second"`
	DotP50     float64 `json:"dot_p50_seconds"`
	DotP99     float64 `json:"dot_p99_seconds"`
	DotMax     float64 `json:"dot_max_seconds"`
}

func (r report) print(w io.Writer, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(r)
	}
	ms := func(s float64) string { return strconv.FormatFloat(s*1000, 'f', 1, 64) + "ms" }
	_, err := fmt.Fprintf(w, "loadgen: messages=%d accepted=%d failed=%d recipients=%d bytes=%d sessions=%d elapsed=%.3fs rate=%.1f/s dot_p50=%s dot_p99=%s dot_max=%s\n",
		r.Messages, r.Accepted, r.Failed, r.Recipients, r.Bytes, r.Sessions, r.Elapsed, r.Rate, ms(r.DotP50), ms(r.DotP99), ms(r.DotMax))
	return err
}

// percentile returns the p-th percentile (0 < p <= 1) of sorted
// durations, by the nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// failures keeps the first distinct failures to show.
type failures struct {
	mu   sync.Mutex
	seen map[string]bool
	w    io.Writer
}

func (f *failures) add(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	msg := err.Error()
	if f.seen[msg] || len(f.seen) >= 10 {
		return
	}
	f.seen[msg] = true
	fmt.Fprintln(f.w, "loadgen: failed:", msg)
}

// generate sends the load and measures it.
func generate(ctx context.Context, cfg config, stderr io.Writer) report {
	var next atomic.Int64 // the next message number to send
	var accepted, failed, recipients atomic.Int64
	var bytes atomic.Int64
	fails := &failures{seen: map[string]bool{}, w: stderr}
	latencies := make([][]time.Duration, cfg.sessions)
	body := newBody(cfg.size)

	start := time.Now()
	var wg sync.WaitGroup
	for s := range cfg.sessions {
		wg.Go(func() {
			var c *gosmtp.Client
			var unbind func() bool
			sent := 0 // over c
			closeConn := func(quit bool) {
				if c != nil {
					if quit {
						c.Quit()
					}
					c.Close()
					unbind()
					c, sent = nil, 0
				}
			}
			defer closeConn(true)
			for ctx.Err() == nil {
				n := int(next.Add(1)) - 1
				if n >= cfg.messages {
					return
				}
				if c == nil {
					var err error
					if c, unbind, err = dial(ctx, cfg); err != nil {
						failed.Add(1)
						fails.add(err)
						continue
					}
				}
				d, size, err := sendOne(c, cfg, body, n)
				sent++
				if err != nil {
					failed.Add(1)
					fails.add(err)
					var se *gosmtp.SMTPError
					if errors.As(err, &se) {
						// A refusal leaves the session usable after RSET.
						if c.Reset() != nil {
							closeConn(false)
						}
					} else {
						closeConn(false)
					}
					continue
				}
				accepted.Add(1)
				recipients.Add(int64(cfg.rcpts))
				bytes.Add(int64(size))
				latencies[s] = append(latencies[s], d)
				if cfg.perConn > 0 && sent >= cfg.perConn {
					closeConn(true)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	all := slices.Concat(latencies...)
	slices.Sort(all)
	r := report{
		Messages: cfg.messages, Accepted: int(accepted.Load()), Recipients: int(recipients.Load()),
		Bytes: bytes.Load(), Sessions: cfg.sessions, Elapsed: elapsed.Seconds(),
	}
	// Messages never tried because the run was cut short count as
	// failed too.
	r.Failed = cfg.messages - r.Accepted
	if elapsed > 0 {
		r.Rate = float64(r.Accepted) / elapsed.Seconds()
	}
	if len(all) > 0 {
		r.DotP50 = percentile(all, 0.50).Seconds()
		r.DotP99 = percentile(all, 0.99).Seconds()
		r.DotMax = all[len(all)-1].Seconds()
	}
	return r
}

// dial opens a session and says EHLO. A run cut short by its timeout or a
// signal must not hang in a read: the connection is closed when ctx ends,
// until unbind is called.
func dial(ctx context.Context, cfg config) (c *gosmtp.Client, unbind func() bool, err error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", cfg.server)
	if err != nil {
		return nil, nil, err
	}
	unbind = context.AfterFunc(ctx, func() { conn.Close() })
	c = gosmtp.NewClient(conn)
	c.CommandTimeout = time.Minute
	c.SubmissionTimeout = 5 * time.Minute
	if err := c.Hello(cfg.helo); err != nil {
		unbind()
		c.Close()
		return nil, nil, fmt.Errorf("EHLO: %w", err)
	}
	return c, unbind, nil
}

// sendOne sends message n and returns the time from the end of the message
// to the 250, and the size written.
func sendOne(c *gosmtp.Client, cfg config, body []byte, n int) (time.Duration, int, error) {
	if err := c.Mail(cfg.from, nil); err != nil {
		return 0, 0, fmt.Errorf("MAIL: %w", err)
	}
	for i := range cfg.rcpts {
		to := cfg.to
		if strings.Contains(to, "%d") {
			to = strings.Replace(to, "%d", strconv.Itoa(i), 1)
		}
		if err := c.Rcpt(to, nil); err != nil {
			return 0, 0, fmt.Errorf("RCPT %s: %w", to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return 0, 0, fmt.Errorf("DATA: %w", err)
	}
	header := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: loadgen message %d\r\nMessage-ID: <%d.%d@%s>\r\nX-Loadgen-Seq: %d\r\n\r\n",
		cfg.from, strings.Replace(cfg.to, "%d", "0", 1), n, n, time.Now().UnixNano(), cfg.helo, n)
	bw := bufio.NewWriterSize(w, 32<<10)
	bw.WriteString(header)
	rest := max(cfg.size-len(header), 0)
	bw.Write(body[:rest])
	if err := bw.Flush(); err != nil {
		return 0, 0, fmt.Errorf("DATA: %w", err)
	}
	start := time.Now()
	if _, err := w.CloseWithResponse(); err != nil {
		return 0, 0, fmt.Errorf("end of DATA: %w", err)
	}
	return time.Since(start), len(header) + rest, nil
}

// newBody returns size bytes of body text in lines of 76 characters and
// CRLF, the last line shortened to fit.
func newBody(size int) []byte {
	const line = "The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrst\r\n"
	b := make([]byte, 0, size+len(line))
	for len(b) < size {
		b = append(b, line...)
	}
	b = b[:size]
	if size >= 2 {
		b[size-2], b[size-1] = '\r', '\n'
	}
	return b
}
