//go:build tools

// Package tools holds the developer programs that run against smxd: the load
// generator, the sink, the crash harness and the benchmark drivers.
//
// This file pins the modules the project builds on so that `go mod tidy`
// keeps them while the packages that use them are being written.
package tools

import (
	_ "github.com/cockroachdb/datadriven"
	_ "github.com/cockroachdb/pebble/v2"
	_ "github.com/emersion/go-sasl"
	_ "github.com/emersion/go-smtp"
	_ "github.com/miekg/dns"
	_ "github.com/spf13/cobra"
	_ "github.com/stretchr/testify/require"
	_ "github.com/vmihailenco/msgpack/v5"
)
