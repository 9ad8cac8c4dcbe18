// Package dnstest runs a real DNS server on loopback for tests: it serves
// records given in zone file syntax over UDP and TCP on one port, and can
// answer SERVFAIL, truncate UDP answers, or hold answers back, per name. It
// is built with github.com/miekg/dns and is used by the tests of the
// resolver and policy packages; it is never used by the daemon.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server is a DNS server on 127.0.0.1.
type Server struct {
	// Addr is "127.0.0.1:port" for both UDP and TCP.
	Addr string
	// NoChase makes the server answer a CNAME without the records of its
	// target, as an authoritative server of another zone would.
	NoChase bool

	mu       sync.Mutex
	records  map[string][]dns.RR // by lower-case owner name
	rcodes   map[question]int
	truncate map[string]bool
	hold     map[string]chan struct{}
	held     chan string
	queries  map[question]int
	tcp      map[question]int

	udp, tcpSrv *dns.Server
}

type question struct {
	name  string
	qtype uint16
}

// Start starts a server and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		records:  make(map[string][]dns.RR),
		rcodes:   make(map[question]int),
		truncate: make(map[string]bool),
		hold:     make(map[string]chan struct{}),
		held:     make(chan string, 64),
		queries:  make(map[question]int),
		tcp:      make(map[question]int),
	}
	var pc net.PacketConn
	var ln net.Listener
	var err error
	for range 20 {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("dnstest: no port free for both UDP and TCP: %v", err)
	}
	s.Addr = pc.LocalAddr().String()
	started := make(chan struct{}, 2)
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serveUDP), NotifyStartedFunc: func() { started <- struct{}{} }}
	s.tcpSrv = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serveTCP), NotifyStartedFunc: func() { started <- struct{}{} }}
	go s.udp.ActivateAndServe()
	go s.tcpSrv.ActivateAndServe()
	for range 2 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("dnstest: server did not start")
		}
	}
	t.Cleanup(func() {
		s.mu.Lock()
		for name, ch := range s.hold {
			close(ch)
			delete(s.hold, name)
		}
		s.mu.Unlock()
		s.udp.Shutdown()
		s.tcpSrv.Shutdown()
	})
	return s
}

// Add adds records in zone file syntax, one per string, for example
// "example.com. 300 IN MX 10 mx.example.com.".
func (s *Server) Add(t testing.TB, rrs ...string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, text := range rrs {
		rr, err := dns.NewRR(text)
		if err != nil {
			t.Fatalf("dnstest: %q: %v", text, err)
		}
		name := strings.ToLower(rr.Header().Name)
		s.records[name] = append(s.records[name], rr)
	}
}

// Rcode makes the server answer rcode (for example dns.RcodeServerFailure)
// to questions for name and qtype.
func (s *Server) Rcode(name string, qtype uint16, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcodes[question{dns.CanonicalName(name), qtype}] = rcode
}

// Truncate makes UDP answers for name come back empty with the TC bit set;
// TCP answers are whole.
func (s *Server) Truncate(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.truncate[dns.CanonicalName(name)] = true
}

// Hold makes the server sit on questions for name until Release. Held
// reports each question held.
func (s *Server) Hold(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold[dns.CanonicalName(name)] = make(chan struct{})
}

// Release answers the held questions for name and stops holding.
func (s *Server) Release(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.hold[dns.CanonicalName(name)]; ok {
		close(ch)
		delete(s.hold, dns.CanonicalName(name))
	}
}

// Held receives the name of each question the server is holding.
func (s *Server) Held() <-chan string { return s.held }

// Queries returns how many questions for name and qtype arrived (UDP and
// TCP).
func (s *Server) Queries(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[question{dns.CanonicalName(name), qtype}]
}

// TCPQueries returns how many of them came over TCP.
func (s *Server) TCPQueries(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tcp[question{dns.CanonicalName(name), qtype}]
}

func (s *Server) serveUDP(w dns.ResponseWriter, r *dns.Msg) { s.serve(w, r, false) }
func (s *Server) serveTCP(w dns.ResponseWriter, r *dns.Msg) { s.serve(w, r, true) }

func (s *Server) serve(w dns.ResponseWriter, r *dns.Msg, tcp bool) {
	if len(r.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	key := question{strings.ToLower(q.Name), q.Qtype}
	s.mu.Lock()
	s.queries[key]++
	if tcp {
		s.tcp[key]++
	}
	hold := s.hold[key.name]
	s.mu.Unlock()
	if hold != nil {
		s.held <- key.name
		<-hold
	}
	w.WriteMsg(s.answer(r, key, tcp))
}

func (s *Server) answer(r *dns.Msg, key question, tcp bool) *dns.Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	if rcode, ok := s.rcodes[key]; ok {
		m.Rcode = rcode
		return m
	}
	if s.truncate[key.name] && !tcp {
		m.Truncated = true
		return m
	}
	name := key.name
	for hops := 0; hops < 16; hops++ {
		rrs, exists := s.records[name]
		if !exists {
			if hops == 0 || !s.NoChase {
				m.Rcode = dns.RcodeNameError
			}
			break
		}
		var target string
		found := false
		for _, rr := range rrs {
			if rr.Header().Rrtype == key.qtype {
				m.Answer = append(m.Answer, dns.Copy(rr))
				found = true
			} else if cn, ok := rr.(*dns.CNAME); ok {
				m.Answer = append(m.Answer, dns.Copy(cn))
				target = strings.ToLower(cn.Target)
			}
		}
		if found || target == "" || s.NoChase {
			break
		}
		name = target
	}
	if len(m.Answer) == 0 || m.Rcode == dns.RcodeNameError {
		soa, _ := dns.NewRR("test. 60 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 30")
		m.Ns = append(m.Ns, soa)
	}
	if r.IsEdns0() != nil {
		m.SetEdns0(4096, false)
	}
	return m
}
