package policy

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"strings"
)

// EncodeDN encodes a DN for access map keys as seed 001 says ("Configuration
// for SMTP Server", tls flags): every non-printable character and each of
// < > ( ) " + and space is replaced by '+' and its two-digit upper-case
// hexadecimal ASCII value. Bytes outside printable ASCII (UTF-8 included)
// count as non-printable. For example "/CN=Darth Mail (Cert)/" becomes
// "/CN=Darth+20Mail+20+28Cert+29/".
func EncodeDN(dn string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(dn); i++ {
		c := dn[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`<>()"+`, c) >= 0 {
			b.WriteByte('+')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// OpenSSL's short names for the attribute types of a DN.
var dnShortNames = map[string]string{
	"2.5.4.3":                    "CN",
	"2.5.4.4":                    "SN",
	"2.5.4.5":                    "serialNumber",
	"2.5.4.6":                    "C",
	"2.5.4.7":                    "L",
	"2.5.4.8":                    "ST",
	"2.5.4.9":                    "street",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"2.5.4.12":                   "title",
	"2.5.4.17":                   "postalCode",
	"2.5.4.42":                   "GN",
	"2.5.4.43":                   "initials",
	"2.5.4.46":                   "dnQualifier",
	"0.9.2342.19200300.100.1.1":  "UID",
	"0.9.2342.19200300.100.1.25": "DC",
	"1.2.840.113549.1.9.1":       "emailAddress",
}

// OneLineDN renders a certificate name in OpenSSL's one-line form, which
// is what the seed's certissuer: and certsubject: keys are written in:
// "/C=US/ST=California/O=Example/CN=Example CA/emailAddress=ca@example.com",
// attributes in the order of the certificate.
func OneLineDN(name pkix.Name) string {
	var b strings.Builder
	for _, atv := range name.Names {
		b.WriteByte('/')
		oid := atv.Type.String()
		if short, ok := dnShortNames[oid]; ok {
			b.WriteString(short)
		} else {
			b.WriteString(oid)
		}
		b.WriteByte('=')
		switch v := atv.Value.(type) {
		case string:
			b.WriteString(v)
		case asn1.RawValue:
			b.Write(v.Bytes)
		default:
			b.WriteString(fmt.Sprint(v))
		}
	}
	return b.String()
}

// CertInfoFromTLS describes the client certificate of a finished TLS
// handshake: Verified is true when the chain verified against the server's
// CA certificates (tls.Config.ClientAuth VerifyClientCertIfGiven or
// stricter), and Issuer and Subject are in one-line form.
func CertInfoFromTLS(cs tls.ConnectionState) CertInfo {
	if len(cs.PeerCertificates) == 0 {
		return CertInfo{}
	}
	leaf := cs.PeerCertificates[0]
	return CertInfo{
		Verified: len(cs.VerifiedChains) > 0,
		Issuer:   OneLineDN(leaf.Issuer),
		Subject:  OneLineDN(leaf.Subject),
	}
}
