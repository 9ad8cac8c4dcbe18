// Package control is smxd's control socket, the seed's qmgrctl interface
// (seed 001 control_socket, "Interacting with QMGR"): a unix socket,
// readable and writable by smxd's user alone, over which smxctl asks for
// the daemon's status and steers the queue.
//
// # Protocol
//
// A client connects and sends requests, one JSON object per line; the
// server answers each with one JSON object on one line, in order:
//
//	-> {"command":"hold","txn":"S0000000065A1B2C300","rcpt":1,"reason":"spam?"}
//	<- {"ok":true,"result":{"txn":"S0000000065A1B2C300","rcpt":1}}
//	-> {"command":"flush","domain":"example.net"}
//	<- {"ok":true,"result":{"requeued":3}}
//	-> {"command":"frobnicate"}
//	<- {"ok":false,"error":"unknown command \"frobnicate\""}
//
// Request lines are at most MaxRequest bytes. A line that is not one JSON
// object with known fields gets an error reply and the connection is
// closed; so does a peer that is neither smxd's user nor root (checked
// with SO_PEERCRED before anything is read). The operator's user name for
// the events that record operator actions comes from the peer's
// credentials, never from the request.
//
// The commands and their results are the Command constants and the result
// types below; docs/operations.md lists them with examples. Fields are
// added, never renamed.
//
// The package owns the socket and the wire format; what a command does is
// the Handler's business (the daemon's).
package control

import (
	"encoding/json"
	"fmt"
	"time"
)

// MaxRequest is the longest request line accepted, newline included.
const MaxRequest = 64 << 10

// The commands.
const (
	// CmdStatus returns a Status.
	CmdStatus = "status"
	// CmdFlush requeues deferred recipients now: those of Domain, or of
	// message Txn (recipient Rcpt), or all of DEFEDB when neither is
	// given. Result: FlushResult.
	CmdFlush = "flush"
	// CmdHold, CmdRelease, CmdDelete and CmdRequeue act on message Txn,
	// or its recipient Rcpt when given; Reason is recorded with the
	// operator event. Result: ActionResult.
	CmdHold    = "hold"
	CmdRelease = "release"
	CmdDelete  = "delete"
	CmdRequeue = "requeue"
	// CmdRedirect sends recipient Rcpt of Txn to Addr or, without Rcpt,
	// the whole message: every recipient still queued is finished and one
	// new recipient at Addr takes their places. Result: ActionResult.
	CmdRedirect = "redirect"
	// CmdReload reloads the maps and the reloadable parts of smx.conf,
	// like SIGHUP. Result: ReloadResult.
	CmdReload = "reload"
	// CmdConfig returns the running configuration in smx.conf syntax.
	// Result: ConfigResult.
	CmdConfig = "config"
	// CmdRestart restarts Component with its restart dependencies.
	// Result: RestartResult.
	CmdRestart = "restart"
)

// Request is one request line.
type Request struct {
	Command string `json:"command"`
	// Txn is a message's ss_ta.
	Txn string `json:"txn,omitempty"`
	// Rcpt is a recipient index within Txn; absent means the whole
	// message.
	Rcpt *int32 `json:"rcpt,omitempty"`
	// Domain selects the recipients of a domain and its subdomains
	// (flush).
	Domain string `json:"domain,omitempty"`
	// Addr is the new address of a redirect.
	Addr string `json:"addr,omitempty"`
	// Reason is recorded in the operator event.
	Reason string `json:"reason,omitempty"`
	// Component names the component to restart.
	Component string `json:"component,omitempty"`
}

// Response is one answer line: Result when OK, Error otherwise.
type Response struct {
	OK     bool            `json:"ok"`
	Error  string          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// Status is the answer to status.
type Status struct {
	Version   string    `json:"version"`
	PID       int       `json:"pid"`
	Hostname  string    `json:"hostname"`
	Started   time.Time `json:"started"`
	UptimeSec float64   `json:"uptime_seconds"`
	// Queue is the number of recipients in each queue.
	Queue QueueSizes `json:"queue"`
	// Sessions are the open SMTP sessions per smtps section.
	Sessions map[string]int `json:"sessions"`
	// Rates are messages per minute over the last minute and the last
	// five minutes.
	Rates Rates `json:"rates"`
	// Totals count since smxd started.
	Totals Totals `json:"totals"`
	// Disk is the file system of the queue directory.
	Disk Disk `json:"disk"`
	// Load is the scheduler's load state: normal, slow or refuse, with
	// the reason.
	Load       string `json:"load"`
	LoadReason string `json:"load_reason,omitempty"`
	// LastSeq is the sequence number of the last durable event and
	// SnapshotSeq that of the last snapshot taken.
	LastSeq     uint64 `json:"last_seq"`
	SnapshotSeq uint64 `json:"snapshot_seq"`
	// Components are the supervised components.
	Components []Component `json:"components"`
}

// QueueSizes counts recipients by queue.
type QueueSizes struct {
	IQDB    int `json:"IQDB"`
	IQDBMax int `json:"IQDB_max"`
	AQ      int `json:"AQ"`
	AQMax   int `json:"AQ_max"`
	DEFEDB  int `json:"DEFEDB"`
}

// Rates are per minute.
type Rates struct {
	Received1m  float64 `json:"received_1m"`
	Received5m  float64 `json:"received_5m"`
	Delivered1m float64 `json:"delivered_1m"`
	Delivered5m float64 `json:"delivered_5m"`
}

// Totals count messages and recipients since start.
type Totals struct {
	Connections  uint64 `json:"connections"`
	Transactions uint64 `json:"transactions"`
	Delivered    uint64 `json:"delivered"`
	Deferred     uint64 `json:"deferred"`
	Bounced      uint64 `json:"bounced"`
}

// Disk describes a file system in bytes.
type Disk struct {
	Path  string `json:"path"`
	Free  int64  `json:"free"`
	Total int64  `json:"total"`
}

// Component is one supervised component.
type Component struct {
	Name      string    `json:"name"`
	Running   bool      `json:"running"`
	Since     time.Time `json:"since,omitzero"`
	Restarts  int       `json:"restarts"`
	LastError string    `json:"last_error,omitempty"`
}

// FlushResult is the answer to flush.
type FlushResult struct {
	// Requeued counts the recipients made due now.
	Requeued int `json:"requeued"`
}

// ActionResult is the answer to hold, release, delete, requeue and
// redirect: what the operator event was written for.
type ActionResult struct {
	Txn  string `json:"txn"`
	Rcpt *int32 `json:"rcpt,omitempty"`
	// Operator is the user name recorded in the event.
	Operator string `json:"operator"`
}

// ReloadResult is the answer to reload.
type ReloadResult struct {
	// Reloaded lists what was reloaded.
	Reloaded []string `json:"reloaded"`
	// NeedRestart lists changed options that take effect only when smxd
	// restarts.
	NeedRestart []string `json:"need_restart,omitempty"`
}

// ConfigResult is the answer to config.
type ConfigResult struct {
	// File is the configuration file smxd runs with.
	File string `json:"file"`
	// Text is the running configuration in smx.conf syntax, every
	// option with its value.
	Text string `json:"text"`
}

// RestartResult is the answer to restart.
type RestartResult struct {
	// Restarted lists the components restarted, in start order.
	Restarted []string `json:"restarted"`
}

// Validate checks that a request has what its command needs.
func (r *Request) Validate() error {
	needTxn := func() error {
		if r.Txn == "" {
			return fmt.Errorf("%s needs a message (txn)", r.Command)
		}
		return nil
	}
	switch r.Command {
	case CmdStatus, CmdReload, CmdConfig:
		return nil
	case CmdFlush:
		if r.Domain != "" && r.Txn != "" {
			return fmt.Errorf("flush takes a domain or a message, not both")
		}
		if r.Rcpt != nil && r.Txn == "" {
			return fmt.Errorf("flush of a recipient needs its message (txn)")
		}
		return nil
	case CmdHold, CmdRelease, CmdDelete, CmdRequeue:
		return needTxn()
	case CmdRedirect:
		if err := needTxn(); err != nil {
			return err
		}
		if r.Addr == "" {
			return fmt.Errorf("redirect needs a new address (addr)")
		}
		return nil
	case CmdRestart:
		if r.Component == "" {
			return fmt.Errorf("restart needs a component")
		}
		return nil
	case "":
		return fmt.Errorf("request without a command")
	}
	return fmt.Errorf("unknown command %q", r.Command)
}
