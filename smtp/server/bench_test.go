package server

import (
	"bufio"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smx-mta/smx/log/maillog"
	"github.com/smx-mta/smx/smtp"
)

// The benchmarks receive 5 KB messages with one recipient into the real,
// durable CDB and event log (every 250 follows an fsync of both, shared
// between concurrent sessions by group commit). They report messages/s or
// sessions/s and the client-side latency from the final dot to the 250.

var benchBody = func() string {
	var b strings.Builder
	b.WriteString("From: s@x.example\r\nTo: r@y.example\r\nSubject: benchmark\r\nMessage-ID: <bench@x.example>\r\n\r\n")
	for b.Len() < 5000 {
		b.WriteString(strings.Repeat("abcdefghij", 7) + "\r\n")
	}
	return b.String()
}()

// benchClient speaks SMTP over one connection, one command at a time.
type benchClient struct {
	conn net.Conn
	bw   *bufio.Writer
	lr   *smtp.LineReader
}

func dialBench(addr string) (*benchClient, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &benchClient{conn: conn, bw: bufio.NewWriter(conn), lr: smtp.NewLineReader(bufio.NewReader(conn), 4096)}
	if err := c.expect(220); err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.cmd("EHLO bench.example", 250); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *benchClient) expect(code int) error {
	r, err := smtp.ReadReply(c.lr)
	if err != nil {
		return err
	}
	if r.Code != code {
		return fmt.Errorf("got %s, want %d", r, code)
	}
	return nil
}

func (c *benchClient) cmd(line string, code int) error {
	c.bw.WriteString(line)
	c.bw.WriteString("\r\n")
	if err := c.bw.Flush(); err != nil {
		return err
	}
	return c.expect(code)
}

// send sends one message and returns the time from the final dot to 250.
func (c *benchClient) send() (time.Duration, error) {
	if err := c.cmd("MAIL FROM:<s@x.example>", 250); err != nil {
		return 0, err
	}
	if err := c.cmd("RCPT TO:<r@y.example>", 250); err != nil {
		return 0, err
	}
	if err := c.cmd("DATA", 354); err != nil {
		return 0, err
	}
	// The body goes out first, so that the clock starts at the final
	// dot and measures what the server does from there: the durable
	// commit of body and event, then the 250.
	c.bw.WriteString(benchBody)
	if err := c.bw.Flush(); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := c.cmd(".", 250); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func benchServer(b *testing.B) *testServer {
	st := openStores(b, b.TempDir())
	ts := startServerOn(b, st, func(o *Options) {
		o.MailLog = maillog.Discard()
		o.MaxTransactions = -1
		o.MaxRecipientsPerSession = -1
		o.MaxSessions = -1
		o.Conns = NewConnLimiter(ConnLimiterOptions{Default: ConnLimits{Rate: -1, Max: -1}})
	})
	return ts
}

// runClients spreads b.N operations over n concurrent clients; op runs one
// operation on the client's state and returns a final-dot latency. It
// reports the syncs of the CDB and of the event log per operation: group
// commit keeps them under one each as clients are added.
func runClients[S any](b *testing.B, st *stores, n int, open func() (S, error), op func(S) (time.Duration, error), close func(S)) {
	cdbSyncs, logSyncs := st.cdb.Stats().Syncs, st.log.Stats().WALSyncs
	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	var next int
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := open()
			if err != nil {
				b.Error(err)
				return
			}
			defer close(st)
			local := make([]time.Duration, 0, b.N/n+1)
			for {
				mu.Lock()
				if next >= b.N {
					mu.Unlock()
					break
				}
				next++
				mu.Unlock()
				d, err := op(st)
				if err != nil {
					b.Error(err)
					return
				}
				local = append(local, d)
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "ops/s")
		b.ReportMetric(ms(percentile(lat, 50)), "p50-ms")
		b.ReportMetric(ms(percentile(lat, 99)), "p99-ms")
		var sum time.Duration
		for _, d := range lat {
			sum += d
		}
		b.ReportMetric(ms(sum)/float64(len(lat)), "mean-ms")
		b.ReportMetric(float64(st.cdb.Stats().Syncs-cdbSyncs)/float64(len(lat)), "cdb-syncs/op")
		b.ReportMetric(float64(st.log.Stats().WALSyncs-logSyncs)/float64(len(lat)), "log-syncs/op")
	}
}

// percentile returns the p-th percentile of the sorted durations by the
// nearest-rank method: the smallest value that at least p percent of the
// values do not exceed.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (len(sorted)*p + 99) / 100 // ceil(n*p/100), 1-based
	return sorted[max(rank, 1)-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkMessages: messages/s over long sessions, final dot latency.
func BenchmarkMessages(b *testing.B) {
	for _, clients := range []int{1, 50} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			ts := benchServer(b)
			b.SetBytes(int64(len(benchBody)))
			runClients(b, ts.st, clients,
				func() (*benchClient, error) { return dialBench(ts.addr) },
				func(c *benchClient) (time.Duration, error) { return c.send() },
				func(c *benchClient) { c.cmd("QUIT", 221); c.conn.Close() })
		})
	}
}

// BenchmarkSessions: sessions/s, each a connection with one message.
func BenchmarkSessions(b *testing.B) {
	for _, clients := range []int{1, 50} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			ts := benchServer(b)
			runClients(b, ts.st, clients,
				func() (string, error) { return ts.addr, nil },
				func(addr string) (time.Duration, error) {
					c, err := dialBench(addr)
					if err != nil {
						return 0, err
					}
					defer c.conn.Close()
					d, err := c.send()
					if err != nil {
						return 0, err
					}
					return d, c.cmd("QUIT", 221)
				},
				func(string) {})
		})
	}
}

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 200; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	for _, tt := range []struct {
		n, p int
		want time.Duration
	}{{200, 50, 100}, {200, 99, 198}, {100, 99, 99}, {100, 50, 50}, {1, 99, 1}, {3, 50, 2}, {10, 99, 10}} {
		if got := percentile(lat[:tt.n], tt.p); got != tt.want*time.Millisecond {
			t.Errorf("p%d of 1..%d ms = %v, want %v ms", tt.p, tt.n, got, tt.want)
		}
	}
}
