//go:build !unix

package server

import (
	"errors"
	"net"
)

var (
	errEMFILE       = errors.New("EMFILE")
	errENFILE       = errors.New("ENFILE")
	errECONNABORTED = errors.New("ECONNABORTED")
)

// inputWaiting cannot peek without blocking here; the greeting pause is
// the only early talker check.
func inputWaiting(net.Conn) bool { return false }
