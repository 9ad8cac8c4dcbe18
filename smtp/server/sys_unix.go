//go:build unix

package server

import (
	"net"
	"syscall"
)

var (
	errEMFILE       error = syscall.EMFILE
	errENFILE       error = syscall.ENFILE
	errECONNABORTED error = syscall.ECONNABORTED
)

// inputWaiting reports whether the peer of conn has already sent data,
// without blocking and without consuming it: the check for early talkers
// when there is no greeting pause.
func inputWaiting(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	waiting := false
	rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		waiting = err == nil && n > 0
		return true // never wait for readiness
	})
	return waiting
}
