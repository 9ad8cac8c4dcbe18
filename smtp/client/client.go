package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/smx-mta/smx/log"
)

// Client opens sessions to the next hops of a route and runs transactions
// over them. It holds no connections itself; it is safe for concurrent use.
type Client struct {
	opts Options
}

// New returns a client with opts, defaults filled in.
func New(opts Options) *Client {
	return &Client{opts: opts.withDefaults()}
}

// ConnectError says that no session could be opened for a route. Attempts
// lists every attempt; the last one's reply decides whether the recipients
// are deferred (4xx) or fail (5xx, such as a loop back to ourselves).
type ConnectError struct {
	Attempts []Attempt
}

// Error names the last address tried, the stage it failed at and its
// reply.
func (e *ConnectError) Error() string {
	if len(e.Attempts) == 0 {
		return "client: no host to connect to"
	}
	last := e.Attempts[len(e.Attempts)-1]
	return fmt.Sprintf("client: %s[%s]:%d at %s: %s", last.Host, last.IP, last.Port, last.Stage, last.Reply)
}

// Last returns the attempt that ended the search for a session.
func (e *ConnectError) Last() Attempt {
	if len(e.Attempts) == 0 {
		return Attempt{Stage: StageConnect, Reply: localReply(451, "4.4.0", "no host to connect to")}
	}
	return e.Attempts[len(e.Attempts)-1]
}

// target is one place to connect to.
type target struct {
	host, network, addr, ip string
	port                    int
}

// targets lists the places route asks for, in order.
func (c *Client) targets(route Route) ([]target, error) {
	lmtp := route.Mailer == log.MailerLMTP
	switch route.Mailer {
	case log.MailerESMTP, log.MailerLMTP, "":
	default:
		return nil, fmt.Errorf("client: unknown mailer %q", route.Mailer)
	}
	if lmtp && (route.Socket != "" || (route.Port == 0 && len(route.Hops) == 0)) {
		path := route.Socket
		if path == "" {
			path = c.opts.LMTPSocket
		}
		return []target{{host: "localhost", network: "unix", addr: path, ip: path}}, nil
	}
	port := route.Port
	if port == 0 {
		port = c.opts.RemotePort
	}
	var ts []target
	for _, hop := range route.Hops {
		addrs := hop.Addrs
		if c.opts.ConnectOnlyTo != "" && !lmtp {
			addrs = []string{c.opts.ConnectOnlyTo}
		}
		if len(addrs) == 0 && net.ParseIP(hop.Host) != nil {
			addrs = []string{hop.Host}
		}
		for _, ip := range addrs {
			ts = append(ts, target{
				host: hop.Host, network: "tcp", ip: ip, port: port,
				addr: net.JoinHostPort(ip, strconv.Itoa(port)),
			})
		}
	}
	if len(ts) == 0 {
		return nil, errors.New("client: route has no addresses")
	}
	return ts, nil
}

// Connect opens a session for route: the hosts are tried in order, each
// address of a host in order, moving on after a connection failure, a
// greeting that is not 220, or a failed EHLO. A server that greets with our
// own name ends the search (the talk_to_myself check). The error is a
// *ConnectError listing every attempt.
func (c *Client) Connect(ctx context.Context, route Route) (*Session, []Attempt, error) {
	ts, err := c.targets(route)
	if err != nil {
		return nil, nil, err
	}
	var failed []Attempt
	for _, t := range ts {
		if err := ctx.Err(); err != nil {
			failed = append(failed, Attempt{Host: t.host, IP: t.ip, Port: t.port, Stage: StageConnect,
				Reply: localReply(451, "4.4.0", "delivery cancelled: %v", err)})
			break
		}
		s, a := c.open(ctx, t, route.Mailer == log.MailerLMTP, !c.opts.DisableSTARTTLS)
		if s == nil && a.Stage == StageStartTLS && !a.Reply.Permanent() {
			// The server offered STARTTLS but the handshake failed: the
			// connection is gone. Try the same address again in plain
			// text rather than not deliver at all (opportunistic TLS).
			failed = append(failed, a)
			s, a = c.open(ctx, t, route.Mailer == log.MailerLMTP, false)
		}
		if s != nil {
			return s, failed, nil
		}
		failed = append(failed, a)
		if a.Reply.Local && a.Reply.Enhanced == "5.4.6" {
			// A loop back to ourselves: no other host will be better.
			break
		}
	}
	return nil, failed, &ConnectError{Attempts: failed}
}

// open connects to one target and brings the session up to the point where
// MAIL can be sent. On failure it returns nil and the attempt.
func (c *Client) open(ctx context.Context, t target, lmtp, useTLS bool) (*Session, Attempt) {
	a := Attempt{Host: t.host, IP: t.ip, Port: t.port, Start: c.opts.Now()}
	finish := func(stage string, rep Reply) (*Session, Attempt) {
		a.Stage, a.Reply, a.Finish = stage, rep, c.opts.Now()
		return nil, a
	}
	dctx, cancel := context.WithTimeout(ctx, c.opts.Timeouts.Connect)
	conn, err := c.opts.Dialer.DialContext(dctx, t.network, t.addr)
	cancel()
	if err != nil {
		return finish(StageConnect, localReply(451, "4.4.1", "connect to %s[%s]: %v", t.host, t.ip, dialReason(err)))
	}
	s := &Session{opts: &c.opts, conn: conn, raw: conn, Host: t.host, IP: t.ip, Port: t.port, LMTP: lmtp}
	s.dw = &deadlineWriter{conn: conn, s: s}
	s.r = bufio.NewReaderSize(conn, 4096)
	s.w = bufio.NewWriterSize(s.dw, 32<<10)
	stop := context.AfterFunc(ctx, s.interrupt)
	defer stop()

	greeting, err := s.read(c.opts.Timeouts.Greeting)
	if err != nil {
		s.close()
		return finish(StageGreeting, s.failure(err, StageGreeting))
	}
	s.Greeting = greeting
	if greeting.Code != 220 {
		s.Close()
		return finish(StageGreeting, greeting)
	}
	if name := serverName(greeting); s.myself(name) {
		s.Close()
		return finish(StageGreeting, localReply(554, "5.4.6", "mail for %s loops back to myself (%s greets as %s)", t.host, s.peer(), name))
	}
	rep, err := s.hello()
	if err != nil {
		s.close()
		return finish(StageEHLO, s.failure(err, StageEHLO))
	}
	if rep.Code != 250 {
		s.Close()
		return finish(StageEHLO, rep)
	}
	if name := serverName(rep); s.ESMTP && s.myself(name) {
		s.Close()
		return finish(StageEHLO, localReply(554, "5.4.6", "mail for %s loops back to myself (%s answers EHLO as %s)", t.host, s.peer(), name))
	}
	if useTLS && s.Ext.Has("STARTTLS") {
		started, rep, err := s.startTLS()
		switch {
		case err != nil && started:
			s.close()
			return finish(StageEHLO, s.failure(err, StageEHLO))
		case err != nil:
			s.close()
			return finish(StageStartTLS, localReply(451, "4.7.5", "TLS with %s failed: %v", s.peer(), err))
		case rep.Code == 421:
			s.close()
			return finish(StageStartTLS, rep)
		}
	}
	a.TLS = s.TLS
	return s, a
}

// dialReason shortens a dial error to what a postmaster needs.
func dialReason(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

// Deliver runs one transaction for env over a new session to route and
// closes the session (QUIT). It always returns a result with one entry per
// recipient: when no session could be opened, every recipient gets the
// reply of the last attempt.
func (c *Client) Deliver(ctx context.Context, route Route, env *Envelope) *Result {
	start := c.opts.Now()
	s, attempts, err := c.Connect(ctx, route)
	if err != nil {
		res := FailedResult(env, attempts, err)
		res.Start = start
		return res
	}
	res := s.Send(ctx, env)
	res.Attempts = attempts
	res.Start = start
	s.Close()
	return res
}

// FailedResult makes the result of a transaction that could not run
// because no session could be opened; attempts and err are what Connect
// returned. Every recipient gets the reply of the last attempt, except that
// a server that refused to talk to us with a 5xx greeting defers the
// recipients instead of failing them: the other hosts were tried, and a
// server that is not ready for mail now may be later.
func FailedResult(env *Envelope, attempts []Attempt, err error) *Result {
	var last Attempt
	var ce *ConnectError
	if errors.As(err, &ce) {
		last = ce.Last()
	} else {
		last = Attempt{Stage: StageConnect, Reply: localReply(451, "4.4.0", "%v", err)}
	}
	res := &Result{
		Attempts: attempts,
		Host:     last.Host, IP: last.IP, Port: last.Port,
		Stage: last.Stage, Reply: last.Reply,
		Start: last.Start, Finish: last.Finish,
	}
	// The transaction took from the first connection attempt to the
	// last; with no attempt at all it took no time, not the age of the
	// zero time.
	if len(attempts) > 0 && !attempts[0].Start.IsZero() {
		res.Start = attempts[0].Start
	}
	if res.Start.IsZero() || res.Finish.IsZero() {
		res.Start = res.Finish
	}
	rep := last.Reply
	if last.Stage == StageGreeting && rep.Permanent() && !rep.Local {
		rep = localReply(451, "4.4.0", "host %s[%s] refused to talk to me: %s", last.Host, last.IP, rep)
	}
	for _, r := range env.Rcpts {
		res.Rcpts = append(res.Rcpts, RcptResult{Rcpt: r, Reply: rep, Stage: last.Stage})
	}
	return res
}
