package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/smtp"
	"github.com/smx-mta/smx/smtp/policy"
)

// TLSFiles are the files of the seed's tls subsection.
type TLSFiles struct {
	CertFile        string // cert_file: the server certificate chain, PEM
	KeyFile         string // key_file: its private key, PEM
	CACertFile      string // CAcert_file: CA certificates, PEM
	CACertDirectory string // CAcert_directory: a directory of CA certificates, PEM
}

// LoadTLSConfig builds the server's TLS configuration from the tls
// subsection. When CA certificates are configured the server asks clients
// for a certificate and verifies it against them after the handshake; a
// certificate that does not verify does not fail the handshake, it makes
// the verify result FAIL (seed 001, "Format of Received Header").
func LoadTLSConfig(f TLSFiles) (*tls.Config, error) {
	if f.CertFile == "" || f.KeyFile == "" {
		return nil, errors.New("smtp server: tls: cert_file and key_file are both required")
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("smtp server: tls: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	pool := x509.NewCertPool()
	n := 0
	add := func(path string) error {
		pem, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("smtp server: tls: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("smtp server: tls: %s: no PEM certificate found", path)
		}
		n++
		return nil
	}
	if f.CACertFile != "" {
		if err := add(f.CACertFile); err != nil {
			return nil, err
		}
	}
	if f.CACertDirectory != "" {
		entries, err := os.ReadDir(f.CACertDirectory)
		if err != nil {
			return nil, fmt.Errorf("smtp server: tls: CAcert_directory: %w", err)
		}
		for _, e := range entries {
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			// Hash links and certificates: take every file that holds PEM.
			pem, err := os.ReadFile(filepath.Join(f.CACertDirectory, e.Name()))
			if err == nil && pool.AppendCertsFromPEM(pem) {
				n++
			}
		}
	}
	if n > 0 {
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequestClientCert
	}
	return cfg, nil
}

func (s *session) cmdStartTLS(arg string) error {
	switch {
	case s.opts.TLS == nil:
		return s.bad(smtp.NewReply(502, smtp.E(5, 5, 1), "STARTTLS not available"))
	case s.tlsState != nil:
		return s.bad(smtp.NewReply(503, smtp.E(5, 5, 1), "TLS already active"))
	case arg != "":
		return s.bad(noArgs)
	case s.txn != nil:
		return s.bad(smtp.NewReply(503, smtp.E(5, 5, 1), "STARTTLS not allowed during a mail transaction"))
	}
	s.write(smtp.NewReply(220, smtp.E(2, 0, 0), "Ready to start TLS"))
	if err := s.flush(); err != nil {
		return errQuit
	}
	if n := s.br.Buffered(); n > 0 {
		// Whatever the client sent after STARTTLS in plaintext was not
		// protected: it is dropped, never run (STARTTLS command injection).
		s.opts.MailLog.ServerSession(s.id).Where("starttls").Int("discarded", int64(n)).Write()
	}
	if !s.handshake() {
		return errQuit
	}
	return nil
}

// handshake runs the TLS handshake on the connection and restarts the
// session on top of it (RFC 3207 4.2: the server forgets what the client
// said before). It reports whether the session goes on.
func (s *session) handshake() bool {
	tc := tls.Server(s.dc.Conn, s.opts.TLS)
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.IOTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		s.opts.MailLog.ServerSession(s.id).Where("connection").Str("starttls", "failed").Reply(err.Error()).Write()
		return false
	}
	st := tc.ConnectionState()
	s.setConn(tc)
	s.resetTxn()
	s.helo, s.ehlo, s.auth, s.commands = "", false, nil, 0
	s.tlsState = &st
	info, cert := tlsFacts(&st, s.opts.TLS)
	s.tlsInfo = info
	if s.pol != nil {
		ctx, cancel := s.policyContext()
		s.pol.TLS(ctx, cert)
		cancel()
	}
	s.opts.MailLog.ServerSession(s.id).Where("connection").Str("starttls", "successful").
		Str("version", info.Version).Str("cipher", info.Cipher).Int("bits", int64(info.Bits)).
		Str("verify", info.Verify).Write()
	return true
}

// tlsFacts describes a TLS session as the Received: header and the event
// show it, and the client certificate for the policy (nil if none).
func tlsFacts(st *tls.ConnectionState, cfg *tls.Config) (*log.TLSInfo, *policy.CertInfo) {
	info := &log.TLSInfo{
		Version: tlsVersion(st.Version),
		Cipher:  tls.CipherSuiteName(st.CipherSuite),
		Bits:    cipherBits(st.CipherSuite),
	}
	switch {
	case cfg.ClientAuth == tls.NoClientCert:
		info.Verify = "NOT"
	case len(st.PeerCertificates) == 0:
		info.Verify = "NO"
	}
	if len(st.PeerCertificates) == 0 {
		return info, nil
	}
	leaf := st.PeerCertificates[0]
	cert := &policy.CertInfo{Issuer: oneLineDN(leaf.Issuer), Subject: oneLineDN(leaf.Subject)}
	info.PeerIssuer, info.PeerSubject = cert.Issuer, cert.Subject
	verified := len(st.VerifiedChains) > 0
	if !verified && cfg.ClientCAs != nil {
		inter := x509.NewCertPool()
		for _, c := range st.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := leaf.Verify(x509.VerifyOptions{Roots: cfg.ClientCAs, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		verified = err == nil
	}
	cert.Verified = verified
	if verified {
		info.Verify = "OK"
	} else {
		info.Verify = "FAIL"
	}
	return info, cert
}

// tlsVersion names a TLS version as the seed's Received: header does.
func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

// cipherBits is the effective key length of a suite's symmetric cipher.
func cipherBits(id uint16) int {
	name := tls.CipherSuiteName(id)
	switch {
	case strings.Contains(name, "AES_128"):
		return 128
	case strings.Contains(name, "AES_256"), strings.Contains(name, "CHACHA20"):
		return 256
	case strings.Contains(name, "3DES"):
		return 112
	case strings.Contains(name, "RC4_128"):
		return 128
	}
	return 0
}

// oneLineDN writes a name in OpenSSL's one-line form, which the seed's
// certissuer:/certsubject: access map entries use:
// "/C=US/ST=California/O=Example/OU=private/CN=Darth Mail/emailAddress=x@example".
func oneLineDN(n pkix.Name) string {
	var b strings.Builder
	short := map[string]string{
		"2.5.4.6": "C", "2.5.4.8": "ST", "2.5.4.7": "L", "2.5.4.10": "O", "2.5.4.11": "OU",
		"2.5.4.3": "CN", "1.2.840.113549.1.9.1": "emailAddress", "2.5.4.5": "serialNumber",
		"2.5.4.9": "street", "2.5.4.17": "postalCode", "0.9.2342.19200300.100.1.25": "DC",
	}
	for _, atv := range n.Names {
		k, ok := short[atv.Type.String()]
		if !ok {
			k = atv.Type.String()
		}
		b.WriteByte('/')
		b.WriteString(k)
		b.WriteByte('=')
		fmt.Fprint(&b, atv.Value)
	}
	return b.String()
}
