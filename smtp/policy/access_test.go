package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseRHS(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"relay", "relay"},
		{"OK", "ok"},
		{"quick:ok", "quick:ok"},
		{"quick:relay", "quick:relay"},
		{"discard", "discard"},
		{"quick:discard", "quick:discard"},
		{"cont", "cont"},
		{"reject", "reject 550 5.7.0 Rejected"},
		{"error:551 5.7.1 No spammers", "reject 551 5.7.1 No spammers"},
		{"quick:error:551 5.7.1 No mail from spammers", "quick:reject 551 5.7.1 No mail from spammers"},
		{"error: 451 4.7.1 temporary lookup failure", "reject 451 4.7.1 temporary lookup failure"},
		{"error:550 go away", "reject 550 5.7.0 go away"},
		{"error:421", "reject 421 4.7.0"},
	} {
		d, err := ParseRHS(tc.in)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, d.String(), tc.in)
	}
	for _, tc := range []struct{ in, want string }{
		{"allow", `access: unknown right-hand side "allow"`},
		{"error:250 fine", `access: error: needs a 4xx or 5xx reply code, got "250"`},
		{"error:55 x", `access: error: needs a 4xx or 5xx reply code, got "55"`},
		{"error:550 4.7.1 mixed", "access: enhanced code 4.7.1 does not match reply code 550"},
		{"", `access: unknown right-hand side ""`},
	} {
		_, err := ParseRHS(tc.in)
		require.EqualError(t, err, tc.want, tc.in)
	}
}

func FuzzParseRHS(f *testing.F) {
	for _, s := range []string{"relay", "quick:ok", "error:551 5.7.1 No spammers", "error:550", "reject", "quick:error:4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseRHS(s)
		if err != nil {
			return
		}
		if d.Action == Reject {
			if d.Code < 400 || d.Code > 599 || d.Enhanced[0] != byte('0'+d.Code/100) {
				t.Fatalf("%q: bad reply %s", s, d.Reply())
			}
		}
	})
}

func TestEncodeDN(t *testing.T) {
	// The seed's example (seed 002, tls flags).
	require.Equal(t,
		"/C=US/ST=California/O=endmail.org/OU=private/CN=Darth+20Mail+20+28Cert+29/emailAddress=darth+2Bcert@endmail.org",
		EncodeDN("/C=US/ST=California/O=endmail.org/OU=private/CN=Darth Mail (Cert)/emailAddress=darth+cert@endmail.org"))
	require.Equal(t, "+3C+3E+22+0A+C3+A9", EncodeDN("<>\"\né"))
}

func TestCertInfoFromTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	emailOID := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	subject := pkix.Name{
		Country: []string{"US"}, Province: []string{"California"}, Organization: []string{"endmail.org"},
		OrganizationalUnit: []string{"private"}, CommonName: "Darth Mail (Cert)",
		ExtraNames: []pkix.AttributeTypeAndValue{{Type: emailOID, Value: "darth+cert@endmail.org"}},
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: subject, Issuer: subject,
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)

	info := CertInfoFromTLS(tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}})
	require.True(t, info.Verified)
	want := "/C=US/ST=California/O=endmail.org/OU=private/CN=Darth Mail (Cert)/emailAddress=darth+cert@endmail.org"
	require.Equal(t, want, info.Subject)
	require.Equal(t, want, info.Issuer)
	require.False(t, CertInfoFromTLS(tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}).Verified)
	require.Equal(t, CertInfo{}, CertInfoFromTLS(tls.ConnectionState{}))
}

func TestCheckAccessMap(t *testing.T) {
	check := CheckAccessMap([]string{"dnsbltest"})
	good := map[string]string{}
	for k, v := range testAccess {
		good[k] = v
	}
	require.EqualError(t, check(good), `entry "cltaddr:127.0.70.1": access: unknown right-hand side "bogus"`)
	delete(good, "cltaddr:127.0.70.1")
	require.NoError(t, check(good))
	for _, tc := range []struct{ key, value, want string }{
		{"to:x", "allow", `entry "to:x": access: unknown right-hand side "allow"`},
		{"dnsbltest:127.0.0.2", "error:250 x", `entry "dnsbltest:127.0.0.2": access: error: needs a 4xx or 5xx reply code, got "250"`},
		{"protectedrcpt:l", "list:", `entry "protectedrcpt:l": protectedrcpt: bad restriction "list:"`},
		{"protectedrcpt:l", "cltaddr:10.x", `entry "protectedrcpt:l": protectedrcpt: "cltaddr:10.x" is not an IP address or net`},
		{"protectedrcpt:l", "nick:bob", `entry "protectedrcpt:l": protectedrcpt: unknown restriction "nick:bob"`},
		{"protectedrcpt:l", "", `entry "protectedrcpt:l": protectedrcpt: no restrictions`},
	} {
		require.EqualError(t, check(map[string]string{tc.key: tc.value}), tc.want, tc.key)
	}
	require.NoError(t, check(map[string]string{"smtps_session_conf:127.0.0.1": "session_feature=notls;"}))
}
