// Package e2e holds smx's end-to-end tests: they build the real smxd and
// smxctl binaries once (TestMain), start smxd with a configuration in a
// temporary directory, and talk to it as an operator and its peers would:
// swaks, Python's smtplib and go-smtp as clients, a go-smtp server (and
// Postfix's smtp-sink where it can be installed) as the next hop reached
// through a mailertable entry, smxctl over the control socket, signals,
// SIGKILL in the middle of a relay run. Every address is a loopback one.
//
// The package has no code of its own outside the tests; it owns nothing
// but the temporary directories and processes its tests start.
package e2e
