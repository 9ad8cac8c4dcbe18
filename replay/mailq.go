package replay

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
)

// MailqOptions shape a queue listing.
type MailqOptions struct {
	// Directory is the queue directory named in the heading.
	Directory string
	// Location is the time zone of the Q-Time column; nil means UTC.
	Location *time.Location
}

// statusWidth is how much of a status mailq prints, as sendmail does
// without -v; `smxctl audit` shows the whole reply.
const statusWidth = 60

// WriteMailq lists the messages of q that still have recipients to deliver,
// in the layout of sendmail's mailq (seed 003, "Printing the queue"):
//
//			/var/smx (1 request)
//	-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------
//	S00000000000000a01    2048 Sat Mar  1 12:00 <alice@example.org>
//	                                         <z@b.example>
//	                 (Deferred: 421 4.3.0 try later)
//			Total requests: 1
//
// The Q-ID column widens to fit smx's ids. The character after the id is
// '*' while an attempt is in flight. Each live recipient follows on its own
// line, with its last status below it in parentheses: the deferral reason,
// the attempt in progress, or the hold. get fetches the event a status
// comes from (the log's Get); with nil get only the state is printed.
func WriteMailq(w io.Writer, q *projections.Queue, get func(seq uint64) (log.Event, error), opt MailqOptions) error {
	loc := opt.Location
	if loc == nil {
		loc = time.UTC
	}
	type entry struct {
		m     projections.Message
		rcpts []projections.Recipient
	}
	var entries []entry
	idWidth := len("-----Q-ID-----")
	for _, m := range q.Messages() {
		if m.Live == 0 {
			continue
		}
		var live []projections.Recipient
		for _, r := range q.Recipients(m.Txn) {
			if r.State.Live() {
				live = append(live, r)
			}
		}
		entries = append(entries, entry{m, live})
		idWidth = max(idWidth, len(m.Txn)+1)
	}
	bw := bufio.NewWriter(w)
	if len(entries) == 0 {
		fmt.Fprintf(bw, "%s is empty\n", opt.Directory)
	} else {
		plural := "s"
		if len(entries) == 1 {
			plural = ""
		}
		fmt.Fprintf(bw, "\t\t%s (%d request%s)\n", opt.Directory, len(entries), plural)
		left := (idWidth - 4) / 2
		fmt.Fprintf(bw, "%sQ-ID%s --Size-- -----Q-Time----- ------------Sender/Recipient-----------\n",
			strings.Repeat("-", left), strings.Repeat("-", idWidth-4-left))
	}
	rcptIndent := strings.Repeat(" ", idWidth+27)
	const statusIndent = "                 "
	for _, en := range entries {
		flag := ' '
		for _, r := range en.rcpts {
			if r.State == projections.StateInFlight {
				flag = '*'
			}
		}
		fmt.Fprintf(bw, "%*s%c%8d %s <%s>\n", idWidth-1, en.m.Txn, flag, en.m.Size,
			en.m.ReceivedAt.In(loc).Format("Mon Jan _2 15:04"), printable(en.m.Sender))
		if en.m.Held {
			fmt.Fprintf(bw, "%s(held by operator)\n", statusIndent)
		}
		for _, r := range en.rcpts {
			fmt.Fprintf(bw, "%s<%s>\n", rcptIndent, printable(r.Addr))
			if s := printable(rcptStatus(r, en.m.Held, get, loc)); s != "" {
				if len(s) > statusWidth {
					// Cut at a character, not inside one.
					s = strings.ToValidUTF8(s[:statusWidth], "")
				}
				fmt.Fprintf(bw, "%s(%s)\n", statusIndent, s)
			}
		}
	}
	fmt.Fprintf(bw, "\t\tTotal requests: %d\n", len(entries))
	return bw.Flush()
}

// rcptStatus is the last status of a live recipient, as mailq prints it.
// A hold on the whole message is printed under the sender instead.
func rcptStatus(r projections.Recipient, msgHeld bool, get func(uint64) (log.Event, error), loc *time.Location) string {
	var s string
	var e log.Event
	haveEvent := false
	if get != nil && r.LastSeq != 0 {
		if ev, err := get(r.LastSeq); err == nil {
			e, haveEvent = ev, true
		}
	}
	switch r.State {
	case projections.StateDeferred:
		reason := ""
		if p, ok := payload(e).(*log.RcptDeferred); haveEvent && ok {
			reason = p.Reason
			if reason == "" && p.Code != 0 {
				reason = strings.TrimSpace(fmt.Sprintf("%d %s", p.Code, p.Enhanced))
			}
		}
		if reason == "" {
			reason = "next try " + r.Due.In(loc).Format("Mon Jan _2 15:04")
		}
		s = "Deferred: " + reason
	case projections.StateInFlight:
		s = "Delivery in progress"
		if p, ok := payload(e).(*log.AttemptStarted); haveEvent && ok && p.Host != "" {
			s += " to " + p.Host
			if p.IP != "" {
				s += " [" + p.IP + "]"
			}
		}
	case projections.StateResolved:
		s = "Resolved"
		if r.Destination != "" {
			s += " to " + r.Destination
		}
	}
	if r.Held && !msgHeld {
		if s == "" {
			return "held"
		}
		return "held; " + s
	}
	return s
}
