package server

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lookTool finds a program, installing its Debian package when it is
// missing and the test runs as root with apt-get; otherwise the test is
// skipped with the reason.
func lookTool(t *testing.T, prog, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(prog); err == nil {
		return p
	}
	if _, err := exec.LookPath("apt-get"); err != nil || os.Geteuid() != 0 {
		t.Skipf("%s is not installed and cannot be installed here (need root and apt-get): install the Debian package %s", prog, pkg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "apt-get", "install", "-y", "-qq", pkg).CombinedOutput()
	if err != nil {
		t.Skipf("%s is not installed and apt-get install %s failed: %v\n%s", prog, pkg, err, out)
	}
	p, err := exec.LookPath(prog)
	if err != nil {
		t.Skipf("%s still missing after installing %s", prog, pkg)
	}
	return p
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestSwaks sends mail with swaks: plain, pipelined, and with STARTTLS and
// AUTH PLAIN on a submission listener.
func TestSwaks(t *testing.T) {
	swaks := lookTool(t, "swaks", "swaks")
	ca := newTestCA(t, "test CA")
	ts := startServer(t, func(o *Options) {
		o.TLS = serverTLS(t, ca, false)
		o.Auth = fixedCreds{"alice": "secret"}
		o.EightBitMIME = true
	})
	host, port, _ := strings.Cut(ts.addr, ":")
	base := []string{"--server", host, "--port", port, "--helo", "swaks.example", "--from", "s@x.example", "--to", "r@y.example"}
	runTool(t, swaks, append(base, "--header", "Subject: swaks plain")...)
	runTool(t, swaks, append(base, "--pipeline", "--header", "Subject: swaks pipelined")...)
	runTool(t, swaks, append(base, "--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "secret",
		"--header", "Subject: swaks tls")...)
	subjects := map[string]string{}
	for _, tr := range ts.st.received(t) {
		body := ts.st.body(t, tr.Content)
		for _, s := range []string{"swaks plain", "swaks pipelined", "swaks tls"} {
			if strings.Contains(body, "Subject: "+s+"\r\n") {
				subjects[s] = tr.Protocol
			}
		}
	}
	if subjects["swaks plain"] != "ESMTP" || subjects["swaks pipelined"] != "ESMTP" || subjects["swaks tls"] != "ESMTPSA" {
		t.Errorf("received %v", subjects)
	}
}

// TestPythonSmtplib sends mail with Python's smtplib, plain and after
// STARTTLS with the test CA, with an SMTPUTF8 address.
func TestPythonSmtplib(t *testing.T) {
	python := lookTool(t, "python3", "python3")
	ca := newTestCA(t, "test CA")
	ts := startServer(t, func(o *Options) { o.TLS = serverTLS(t, ca, false); o.EightBitMIME = true })
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	writeFile(t, caFile, string(ca.certPEM))
	host, port, _ := strings.Cut(ts.addr, ":")
	script := `
import smtplib, ssl, sys
host, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with smtplib.SMTP(host, port, local_hostname="py.example") as s:
    s.sendmail("s@x.example", ["r@y.example"], b"Subject: py plain\r\n\r\nhello\r\n")
with smtplib.SMTP(host, port, local_hostname="py.example") as s:
    s.starttls(context=ssl.create_default_context(cafile=cafile))
    s.ehlo("py.example")
    s.sendmail("s@x.example", ["r@y.example"], b"Subject: py tls\r\n\r\n.dot\r\n")
with smtplib.SMTP(host, port, local_hostname="py.example") as s:
    s.ehlo()
    s.sendmail("j\u00f6e@b\u00fccher.example", ["r@y.example"], "Subject: py utf8\r\n\r\n\u00fc\r\n".encode(), mail_options=["SMTPUTF8"])
`
	scriptFile := filepath.Join(dir, "send.py")
	writeFile(t, scriptFile, script)
	// mx.test.example is the name in the server certificate; smtplib
	// checks it against the host it connected to, so use the IP the
	// certificate also carries.
	out := runTool(t, python, scriptFile, host, port, caFile)
	got := map[string]*struct{ proto string }{}
	for _, tr := range ts.st.received(t) {
		body := ts.st.body(t, tr.Content)
		for _, s := range []string{"py plain", "py tls", "py utf8"} {
			if strings.Contains(body, "Subject: "+s+"\r\n") {
				got[s] = &struct{ proto string }{tr.Protocol}
			}
		}
	}
	if got["py plain"] == nil || got["py tls"] == nil || got["py tls"].proto != "ESMTPS" || got["py utf8"] == nil {
		t.Errorf("received %v (python said %q)", got, out)
	}
}
