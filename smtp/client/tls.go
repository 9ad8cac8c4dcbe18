package client

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"

	"github.com/smx-mta/smx/log"
)

// tlsConfig returns the configuration for a handshake with host. The
// handshake never fails on verification: mail to a server with a bad
// certificate is still better encrypted than not (the seed uses STARTTLS
// whenever offered); verifier records the result instead.
func tlsConfig(template *tls.Config, host string) *tls.Config {
	var cfg *tls.Config
	if template != nil {
		cfg = template.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if net.ParseIP(host) == nil && cfg.ServerName == "" {
		cfg.ServerName = strings.TrimSuffix(host, ".")
	}
	cfg.InsecureSkipVerify = true
	return cfg
}

// verifier checks the server's chain against the template's roots (the
// system's when nil) and its name against host, and writes the seed's
// result into info: OK verified, FAIL presented but not verified, NO none
// presented.
func verifier(template *tls.Config, host string, info *log.TLSInfo) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			info.Verify = "NO"
			return nil
		}
		leaf := cs.PeerCertificates[0]
		info.PeerSubject = leaf.Subject.String()
		info.PeerIssuer = leaf.Issuer.String()
		opts := x509.VerifyOptions{Intermediates: x509.NewCertPool()}
		if template != nil {
			opts.Roots = template.RootCAs
		}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		if net.ParseIP(host) == nil {
			opts.DNSName = strings.TrimSuffix(host, ".")
		}
		if _, err := leaf.Verify(opts); err != nil {
			info.Verify = "FAIL"
		} else {
			info.Verify = "OK"
		}
		return nil
	}
}

// describeTLS fills in version, cipher and key length.
func describeTLS(info *log.TLSInfo, cs tls.ConnectionState) {
	info.Version = map[uint16]string{
		tls.VersionTLS10: "TLSv1",
		tls.VersionTLS11: "TLSv1.1",
		tls.VersionTLS12: "TLSv1.2",
		tls.VersionTLS13: "TLSv1.3",
	}[cs.Version]
	info.Cipher = tls.CipherSuiteName(cs.CipherSuite)
	switch {
	case strings.Contains(info.Cipher, "AES_128"):
		info.Bits = 128
	case strings.Contains(info.Cipher, "AES_256"), strings.Contains(info.Cipher, "CHACHA20"):
		info.Bits = 256
	case strings.Contains(info.Cipher, "3DES"):
		info.Bits = 112
	}
}
