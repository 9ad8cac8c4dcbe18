package server

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/smx-mta/smx/log/maillog"
)

// The crash test runs the server in a child process (this test binary
// again, running TestCrashChild) on real stores, kills it with SIGKILL and
// checks in the parent, on the reopened stores, that every message that
// got a 250 is there.

const (
	crashDirEnv   = "SMX_SMTPS_CRASH_DIR"
	crashBlockEnv = "SMX_SMTPS_CRASH_BLOCK"
)

// TestCrashChild is the child: it serves until it is killed. It prints
// "addr HOST:PORT" when it listens and "durable SS_TA" after each durable
// commit; with SMX_SMTPS_CRASH_BLOCK set it then blocks before the reply.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestCrash")
	}
	st := openStores(t, dir)
	block := os.Getenv(crashBlockEnv) != ""
	var mu sync.Mutex
	srv, err := New(Options{
		Hostname: "mx.test.example", IDs: st.seq.Generator(7), Content: NewContentStore(st.cdb), Log: st.log,
		Policy: &testPolicy{}, MailLog: maillog.Discard(), MaxSessions: 1000,
		Conns: NewConnLimiter(ConnLimiterOptions{Default: ConnLimits{Rate: -1, Max: -1}}),
		AfterDurable: func(txn string) {
			mu.Lock()
			fmt.Printf("durable %s\n", txn)
			mu.Unlock()
			if block {
				select {} // wait for SIGKILL between the durable commit and the reply
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("addr %s\n", ln.Addr())
	srv.Serve(ln)
}

// child is a running child server.
type child struct {
	cmd     *exec.Cmd
	addr    string
	durable chan string
}

func startChild(t *testing.T, dir string, block bool) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	if block {
		cmd.Env = append(cmd.Env, crashBlockEnv+"=1")
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, durable: make(chan string, 10000)}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "addr "):
				addr <- strings.TrimPrefix(line, "addr ")
			case strings.HasPrefix(line, "durable "):
				c.durable <- strings.TrimPrefix(line, "durable ")
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case c.addr = <-addr:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("child server did not start")
	}
	return c
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
}

// sendAcked sends one message and returns its ss_ta if it got a 250.
func sendAcked(addr string, n int) (string, error) {
	c, err := gosmtp.Dial(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.Hello("load.example"); err != nil {
		return "", err
	}
	if err := c.Mail(fmt.Sprintf("s%d@x.example", n), nil); err != nil {
		return "", err
	}
	if err := c.Rcpt("r@y.example", nil); err != nil {
		return "", err
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(w, "Subject: crash %d\r\n\r\n%s", n, strings.Repeat(strings.Repeat("x", 78)+"\r\n", 25))
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	_, id, _ := strings.Cut(resp.StatusText, "id=")
	return id, nil
}

// checkAcked reopens the stores and checks every acknowledged message.
func checkAcked(t *testing.T, dir string, acked map[string]int) {
	t.Helper()
	st := openStores(t, dir)
	defer st.close()
	got := st.received(t)
	for id, n := range acked {
		tr := got[id]
		if tr == nil {
			t.Errorf("message %s (number %d) got 250 but is not in the log", id, n)
			continue
		}
		if body := st.body(t, tr.Content); !strings.Contains(body, fmt.Sprintf("Subject: crash %d\r\n", n)) {
			t.Errorf("message %s: body %q", id, body[:min(200, len(body))])
		}
	}
}

func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test starts child processes")
	}
	dir := t.TempDir()

	// 1. Killed between the durable commit and the reply: the message is
	// there after restart although its client never saw the 250.
	c := startChild(t, dir, true)
	done := make(chan error, 1)
	go func() { _, err := sendAcked(c.addr, 0); done <- err }()
	var blocked string
	select {
	case blocked = <-c.durable:
	case err := <-done:
		c.kill(t)
		t.Fatalf("no durable commit: %v", err)
	}
	c.kill(t)
	if err := <-done; err == nil {
		t.Fatal("client got a reply from a server killed before replying")
	}
	checkAcked(t, dir, map[string]int{blocked: 0})

	// 2. Killed at random moments under load, several times over the same
	// stores.
	rng := rand.New(rand.NewPCG(1, 2))
	acked := map[string]int{blocked: 0}
	var mu sync.Mutex
	next := 1
	for round := range 3 {
		c := startChild(t, dir, false)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					n := next
					next++
					mu.Unlock()
					id, err := sendAcked(c.addr, n)
					if err != nil {
						continue // killed mid-way: no 250, no promise
					}
					mu.Lock()
					acked[id] = n
					mu.Unlock()
				}
			}()
		}
		// Kill after a random number of durable commits.
		want := 20 + rng.IntN(60)
		for i := 0; i < want; i++ {
			select {
			case <-c.durable:
			case <-time.After(30 * time.Second):
				t.Fatalf("round %d: load stalled", round)
			}
		}
		c.kill(t)
		close(stop)
		wg.Wait()
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		t.Logf("round %d: killed after %d durable commits, %d acknowledged so far", round, want, n)
	}
	checkAcked(t, dir, acked)
	if len(acked) < 40 {
		t.Errorf("only %d messages acknowledged: the load did not run", len(acked))
	}
}
