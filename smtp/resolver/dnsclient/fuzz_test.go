package dnsclient

import (
	"testing"

	"github.com/miekg/dns"
)

// FuzzInterpret feeds arbitrary DNS responses to the answer interpretation
// (CNAME chains, negative answers, TTLs): it never panics, returns only
// records of the type asked for, and says either records, a name to ask
// next, a negative answer or an error.
func FuzzInterpret(f *testing.F) {
	for _, zone := range [][]string{
		{"example.com. 300 IN MX 10 mx.example.com."},
		{"alias.example. 300 IN CNAME real.example.", "real.example. 60 IN A 127.0.0.1"},
		{"alias.example. 300 IN CNAME elsewhere.example."},
		{"loop.example. 300 IN CNAME loop2.example.", "loop2.example. 300 IN CNAME loop.example."},
		{"nullmx.example. 300 IN MX 0 ."},
	} {
		m := new(dns.Msg)
		for _, z := range zone {
			rr, err := dns.NewRR(z)
			if err != nil {
				f.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		owner := m.Answer[0].Header().Name
		m.SetQuestion(owner, dns.TypeA)
		soa, _ := dns.NewRR("example. 300 IN SOA ns.example. host.example. 1 2 3 4 30")
		m.Ns = append(m.Ns, soa)
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		for which := range uint8(2) {
			f.Add(b, owner, which)
		}
	}
	f.Fuzz(func(t *testing.T, wire []byte, name string, which uint8) {
		msg := new(dns.Msg)
		if msg.Unpack(wire) != nil {
			return
		}
		qtype := []uint16{dns.TypeMX, dns.TypeA, dns.TypeAAAA, dns.TypePTR}[which%4]
		ans, target, ttl, _, err := interpret(msg, dns.CanonicalName(name), qtype)
		if err != nil {
			return
		}
		for _, rr := range ans.records {
			if rr.Header().Rrtype != qtype {
				t.Fatalf("asked for %s, got %s", dns.TypeToString[qtype], rr)
			}
		}
		if target != "" && (len(ans.records) > 0 || ans.nxdomain) {
			t.Fatalf("a next name %q with records %v or NXDOMAIN %v", target, ans.records, ans.nxdomain)
		}
		if ttl < 0 {
			t.Fatalf("negative TTL %v", ttl)
		}
	})
}
