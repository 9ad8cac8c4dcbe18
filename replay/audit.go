package replay

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
)

// Story is everything the log says about one message.
type Story struct {
	Txn       string
	MessageID string
	// DSNOf is the message this one reports on, when it is a DSN.
	DSNOf string
	// Events are the message's events in log order.
	Events []log.Event
	// DSNs are the stories of the DSN messages it caused, in the order
	// they appear.
	DSNs []*Story
}

// normalizeMessageID drops the angle brackets of a Message-ID so that
// "<a@b>" and "a@b" match.
func normalizeMessageID(id string) string {
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(id), "<"), ">")
}

// Audit finds the messages whose ss_ta or Message-ID is id and returns
// their stories, each with the DSNs it caused. It reads the whole log (the
// live log and the archive): the log has no index by message. Several
// messages can share a Message-ID; none matching gives an empty list.
func Audit(ctx context.Context, src Source, id string) ([]*Story, error) {
	wantID := normalizeMessageID(id)
	var roots []*Story
	byTxn := map[string]*Story{}
	// dsnParent links a DSN's ss_ta to the story that caused it when the
	// link is seen before the DSN's own TxnReceived.
	dsnParent := map[string]*Story{}
	adopt := func(parent *Story, dsn string) {
		if dsn == "" {
			return
		}
		if child, ok := byTxn[dsn]; ok {
			if child.DSNOf == "" || child.DSNOf == parent.Txn {
				for _, c := range parent.DSNs {
					if c == child {
						return
					}
				}
				parent.DSNs = append(parent.DSNs, child)
			}
			return
		}
		dsnParent[dsn] = parent
	}
	it := src.Iter(1)
	defer it.Close()
	n := 0
	for it.Next() {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		e := it.Event()
		if p, ok := e.Payload.(*log.TxnReceived); ok && p != nil {
			_, known := byTxn[e.Txn]
			parent, isDSN := byTxn[p.DSNOf]
			if !isDSN {
				parent, isDSN = dsnParent[e.Txn]
			}
			switch {
			case known:
			case e.Txn == id || (wantID != "" && normalizeMessageID(p.MessageID) == wantID):
				s := &Story{Txn: e.Txn, MessageID: p.MessageID, DSNOf: p.DSNOf}
				byTxn[e.Txn] = s
				roots = append(roots, s)
			case isDSN:
				s := &Story{Txn: e.Txn, MessageID: p.MessageID, DSNOf: p.DSNOf}
				byTxn[e.Txn] = s
				parent.DSNs = append(parent.DSNs, s)
			}
		}
		s, ok := byTxn[e.Txn]
		if !ok {
			continue
		}
		s.Events = append(s.Events, e)
		switch p := payload(e).(type) {
		case *log.DSNQueued:
			adopt(s, p.DSN)
		case *log.DelayNotified:
			adopt(s, p.DSN)
		}
	}
	if err := it.Err(); err != nil {
		return roots, fmt.Errorf("replay: audit: %w", err)
	}
	return roots, nil
}

// WriteStory prints a story as a readable timeline: one line per event with
// the recipient it concerns, then each recipient's outcome, then the DSNs
// the message caused, each as a story of its own.
func WriteStory(w io.Writer, s *Story, loc *time.Location) error {
	if loc == nil {
		loc = time.UTC
	}
	bw := bufio.NewWriter(w)
	writeStory(bw, s, loc, "")
	return bw.Flush()
}

func writeStory(w *bufio.Writer, s *Story, loc *time.Location, indent string) {
	fmt.Fprintf(w, "%smessage %s", indent, s.Txn)
	if s.MessageID != "" {
		fmt.Fprintf(w, " Message-ID %s", printable(s.MessageID))
	}
	if s.DSNOf != "" {
		fmt.Fprintf(w, " (DSN for %s)", s.DSNOf)
	}
	fmt.Fprintln(w)
	// Fold the story's events into a queue of their own to name the
	// recipients and find their outcome. ContentReleased is left out so
	// that the message stays to be read; gaps in the sequence numbers
	// are expected here.
	q := projections.New()
	released := false
	for _, e := range s.Events {
		verb, fields := describe(e, q)
		fmt.Fprintf(w, "%s  %s  seq %d  ", indent, e.Time.In(loc).Format("2006-01-02 15:04:05.000"), e.Seq)
		if e.Rcpt != log.NoRcpt {
			fmt.Fprintf(w, "%d <%s> ", e.Rcpt, printable(addrOf(e, q, e.Rcpt)))
		}
		var b strings.Builder
		writeFields(&b, fields)
		fmt.Fprintf(w, "%s%s\n", verb, b.String())
		if _, ok := e.Payload.(*log.ContentReleased); ok {
			released = true
			continue
		}
		_ = q.Apply(e)
	}
	rcpts := q.Recipients(s.Txn)
	if len(rcpts) > 0 {
		fmt.Fprintf(w, "%s  outcome:\n", indent)
	}
	for _, r := range rcpts {
		fmt.Fprintf(w, "%s    %d <%s> %s", indent, r.Rcpt, printable(r.Addr), r.State)
		if detail := outcomeDetail(s, r, loc); detail != "" {
			fmt.Fprintf(w, ": %s", printable(detail))
		}
		fmt.Fprintln(w)
	}
	if released {
		fmt.Fprintf(w, "%s  content released\n", indent)
	} else if len(s.Events) > 0 {
		fmt.Fprintf(w, "%s  still queued\n", indent)
	}
	for _, d := range s.DSNs {
		writeStory(w, d, loc, indent+"  ")
	}
}

// outcomeDetail is the reply or reason behind a recipient's last state.
func outcomeDetail(s *Story, r projections.Recipient, loc *time.Location) string {
	var last log.Event
	for _, e := range s.Events {
		if e.Seq == r.LastSeq {
			last = e
			break
		}
	}
	// reply prefers the reply text as received, which usually starts
	// with its codes already.
	reply := func(code int, enhanced, text string) string {
		if code != 0 && strings.HasPrefix(text, strconv.Itoa(code)) {
			return text
		}
		out := enhanced
		if code != 0 {
			out = strings.TrimSpace(fmt.Sprintf("%d %s", code, enhanced))
		}
		return strings.TrimSpace(out + " " + text)
	}
	var d string
	switch p := payload(last).(type) {
	case *log.RcptDelivered:
		d = reply(p.Code, p.Enhanced, p.Reply)
		if p.Host != "" {
			d += " (" + p.Host + ")"
		}
	case *log.RcptFailed:
		d = reply(p.Code, p.Enhanced, p.Reason)
	case *log.RcptExpired:
		d = reply(0, p.Enhanced, p.LastReason)
	case *log.RcptDeferred:
		d = reply(p.Code, p.Enhanced, p.Reason)
		if !p.NextTry.IsZero() {
			d += "; next try " + p.NextTry.In(loc).Format("2006-01-02 15:04:05")
		}
	case *log.RcptResolved:
		if p.Mailer != "" {
			d = "to " + p.Destination
		}
	case *log.Redirect:
		d = fmt.Sprintf("to %d <%s>", p.NewRcpt, p.NewAddr)
	case *log.Delete:
		d = "by " + p.User
	}
	if r.Held && r.State.Live() {
		d = strings.TrimPrefix(d+"; held", "; ")
	}
	if r.DSNOwed {
		d = strings.TrimPrefix(d+"; DSN owed", "; ")
	}
	return d
}
