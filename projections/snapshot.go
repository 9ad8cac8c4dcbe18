package projections

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math"
	"slices"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/smx-mta/smx/log"
)

// SnapshotVersion is the version of the snapshot format Snapshot writes.
// Restore reads this version only: after a format change the daemon
// replays the log from the start once and writes a new snapshot. Version 2
// added the double-bounce mark of a message, the original recipient of
// expanded recipients and the event that marked a destination down; a version 1 snapshot lacks what the fold now
// keeps, so restoring it could not give the state the log gives.
const SnapshotVersion = 2

const snapshotMagic = "smx-projections"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrSnapshotCorrupt is wrapped by the errors of Restore for a snapshot that
// fails its checksum or cannot be decoded.
var ErrSnapshotCorrupt = errors.New("projections: corrupt snapshot")

// Snapshot writes the durable state of q (everything but AQ, which a restart
// empties) to w: msgpack values in the order below, then the CRC-32C of
// those bytes, 4 bytes big-endian.
//
//	"smx-projections", version, seq, time (Unix ns),
//	counters [received msgs, rcpts, bytes, expanded, attempts,
//	          delivered rcpts, bytes, deferred..., failed..., expired..., deleted..., dsns],
//	destinations [[name, down until, down seq, delivered rcpts, bytes,
//	               deferred..., failed..., expired...], ...],
//	message count, then per message in the order received:
//	[ss_ta, sender, content, dsn_of, received (Unix ns), seq, size,
//	 held, content released, double bounce,
//	 extras {rcpt: [list owner, original recipient]},
//	 [[addr, state, flags, notify, due (Unix ns), last seq, destination], ...]]
//
// The same state always gives the same bytes.
func (q *Queue) Snapshot(w io.Writer) error {
	sum := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, sum), 1<<16)
	enc := msgpack.NewEncoder(bw)
	if err := q.encode(enc); err != nil {
		return fmt.Errorf("projections: write snapshot: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("projections: write snapshot: %w", err)
	}
	var trailer [4]byte
	binary.BigEndian.PutUint32(trailer[:], sum.Sum32())
	if _, err := w.Write(trailer[:]); err != nil {
		return fmt.Errorf("projections: write snapshot: %w", err)
	}
	return nil
}

// encoder collects the first error, so that encode reads as the format.
type encoder struct {
	enc *msgpack.Encoder
	err error
}

func (e *encoder) str(s string) {
	if e.err == nil {
		e.err = e.enc.EncodeString(s)
	}
}
func (e *encoder) u64(v uint64) {
	if e.err == nil {
		e.err = e.enc.EncodeUint(v)
	}
}
func (e *encoder) i64(v int64) {
	if e.err == nil {
		e.err = e.enc.EncodeInt(v)
	}
}
func (e *encoder) array(n int) {
	if e.err == nil {
		e.err = e.enc.EncodeArrayLen(n)
	}
}
func (e *encoder) boolean(b bool) {
	if e.err == nil {
		e.err = e.enc.EncodeBool(b)
	}
}
func (e *encoder) tally(t Tally) { e.u64(t.Rcpts); e.u64(t.Bytes) }

func (q *Queue) encode(enc *msgpack.Encoder) error {
	e := &encoder{enc: enc}
	e.str(snapshotMagic)
	e.u64(SnapshotVersion)
	e.u64(q.seq)
	e.i64(q.time)

	c := &q.counters
	e.array(16)
	e.u64(c.Received.Msgs)
	e.u64(c.Received.Rcpts)
	e.u64(c.Received.Bytes)
	e.u64(c.Expanded)
	e.u64(c.Attempts)
	e.tally(c.Delivered)
	e.tally(c.Deferred)
	e.tally(c.Failed)
	e.tally(c.Expired)
	e.tally(c.Deleted)
	e.u64(c.DSNs)

	e.array(len(q.dests) - 1)
	for _, d := range q.dests[1:] {
		e.array(11)
		e.str(d.name)
		e.i64(d.downUntil)
		e.u64(d.downSeq)
		e.tally(d.counters.Delivered)
		e.tally(d.counters.Deferred)
		e.tally(d.counters.Failed)
		e.tally(d.counters.Expired)
	}

	slots := q.slotsBySeq()
	e.u64(uint64(len(slots)))
	for _, slot := range slots {
		m := q.store.at(slot)
		e.array(12)
		e.str(m.txn())
		e.str(m.sender())
		e.str(m.content())
		e.str(m.dsnOf())
		e.i64(m.receivedAt)
		e.u64(m.seq)
		e.i64(m.size)
		e.boolean(m.flags&msgHeld != 0)
		e.boolean(m.flags&msgContentRemoved != 0)
		e.boolean(m.flags&msgDoubleBounce != 0)
		if e.err == nil {
			e.err = enc.EncodeMapLen(len(m.extra))
		}
		for _, idx := range sortedKeys(m.extra) {
			x := m.extra[idx]
			e.i64(int64(idx))
			e.array(2)
			e.str(x.owner)
			e.str(x.orcpt)
		}
		e.array(len(m.rcpts))
		for i := range m.rcpts {
			r := &m.rcpts[i]
			e.array(7)
			e.str(m.addr(r))
			e.u64(uint64(r.state))
			e.u64(uint64(r.flags & rcptDurableFlags))
			e.u64(uint64(r.notify))
			e.i64(r.due)
			e.u64(r.lastSeq)
			e.u64(uint64(r.dest))
		}
	}
	return e.err
}

func sortedKeys[V any](m map[int32]V) []int32 {
	return slices.Sorted(maps.Keys(m))
}

// Restore reads a snapshot written by Snapshot and returns the queue it
// holds, ready for the events after its Seq. A snapshot that fails its
// checksum or does not decode gives an error wrapping ErrSnapshotCorrupt;
// the caller then tries an older snapshot or replays from the start.
func Restore(r io.Reader) (*Queue, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("projections: read snapshot: %w", err)
	}
	return RestoreBytes(data)
}

// RestoreBytes is Restore for a snapshot in memory.
func RestoreBytes(data []byte) (*Queue, error) {
	if len(data) < 4 {
		return nil, fmt.Errorf("%w: %d bytes", ErrSnapshotCorrupt, len(data))
	}
	body, trailer := data[:len(data)-4], data[len(data)-4:]
	if got, want := crc32.Checksum(body, castagnoli), binary.BigEndian.Uint32(trailer); got != want {
		return nil, fmt.Errorf("%w: checksum %08x, want %08x", ErrSnapshotCorrupt, got, want)
	}
	rd := bytes.NewReader(body)
	d := &decoder{dec: msgpack.NewDecoder(rd), in: rd}
	q, err := d.queue()
	if err != nil {
		return nil, err
	}
	return q, nil
}

// decoder reads the snapshot format, keeping the first error. Strings are
// read into one buffer per message so that a message costs one allocation
// for all its strings, as it does when built by Apply.
type decoder struct {
	dec *msgpack.Decoder
	in  *bytes.Reader // what dec reads, for the bytes left
	err error
	buf []byte
}

// fits checks that n elements of at least size bytes each can be in the
// input that is left, so that a damaged length never makes Restore
// allocate more than the snapshot could hold.
func (d *decoder) fits(what string, n, size int) bool {
	if d.err != nil {
		return false
	}
	if n < 0 || n > d.in.Len()/size {
		d.fail(what, fmt.Errorf("%d elements in %d bytes", n, d.in.Len()))
		return false
	}
	return true
}

func (d *decoder) fail(what string, err error) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s: %v", ErrSnapshotCorrupt, what, err)
	}
}

func (d *decoder) u64(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, err := d.dec.DecodeUint64()
	if err != nil {
		d.fail(what, err)
	}
	return v
}

func (d *decoder) i64(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, err := d.dec.DecodeInt64()
	if err != nil {
		d.fail(what, err)
	}
	return v
}

func (d *decoder) boolean(what string) bool {
	if d.err != nil {
		return false
	}
	v, err := d.dec.DecodeBool()
	if err != nil {
		d.fail(what, err)
	}
	return v
}

func (d *decoder) str(what string) string {
	if d.err != nil {
		return ""
	}
	v, err := d.dec.DecodeString()
	if err != nil {
		d.fail(what, err)
	}
	return v
}

// appendStr reads a string onto d.buf and returns its length.
func (d *decoder) appendStr(what string) int {
	if d.err != nil {
		return 0
	}
	n, err := d.dec.DecodeBytesLen()
	if err != nil {
		d.fail(what, err)
		return 0
	}
	if n < 0 {
		return 0
	}
	if n > d.in.Len() {
		d.fail(what, fmt.Errorf("string of %d bytes in %d", n, d.in.Len()))
		return 0
	}
	start := len(d.buf)
	d.buf = append(d.buf, make([]byte, n)...)
	if err := d.dec.ReadFull(d.buf[start:]); err != nil {
		d.fail(what, err)
		return 0
	}
	return n
}

// array reads an array header and checks it has want elements (or at least
// want, when atLeast).
func (d *decoder) array(what string, want int) {
	if d.err != nil {
		return
	}
	n, err := d.dec.DecodeArrayLen()
	if err != nil {
		d.fail(what, err)
		return
	}
	if n != want {
		d.fail(what, fmt.Errorf("%d fields, want %d", n, want))
	}
}

func (d *decoder) length(what string, limit int) int {
	if d.err != nil {
		return 0
	}
	n, err := d.dec.DecodeArrayLen()
	if err != nil {
		d.fail(what, err)
		return 0
	}
	if n < 0 || n > limit {
		d.fail(what, fmt.Errorf("length %d", n))
		return 0
	}
	return n
}

func (d *decoder) tally(what string) Tally {
	return Tally{Rcpts: d.u64(what), Bytes: d.u64(what)}
}

func (d *decoder) queue() (*Queue, error) {
	if magic := d.str("magic"); d.err == nil && magic != snapshotMagic {
		return nil, fmt.Errorf("%w: not a projections snapshot (%q)", ErrSnapshotCorrupt, magic)
	}
	if v := d.u64("version"); d.err == nil && v != SnapshotVersion {
		return nil, fmt.Errorf("projections: snapshot version %d, this build reads %d", v, SnapshotVersion)
	}
	q := New()
	q.seq = d.u64("seq")
	q.time = d.i64("time")

	d.array("counters", 16)
	c := &q.counters
	c.Received.Msgs = d.u64("counters")
	c.Received.Rcpts = d.u64("counters")
	c.Received.Bytes = d.u64("counters")
	c.Expanded = d.u64("counters")
	c.Attempts = d.u64("counters")
	c.Delivered = d.tally("counters")
	c.Deferred = d.tally("counters")
	c.Failed = d.tally("counters")
	c.Expired = d.tally("counters")
	c.Deleted = d.tally("counters")
	c.DSNs = d.u64("counters")

	ndest := d.length("destinations", 1<<28)
	if !d.fits("destinations", ndest, 11) {
		return nil, d.err
	}
	q.dests = make([]destination, 1, ndest+1)
	for i := 0; i < ndest && d.err == nil; i++ {
		d.array("destination", 11)
		dst := destination{name: d.str("destination")}
		dst.downUntil = d.i64("destination")
		dst.downSeq = d.u64("destination")
		dst.counters.Delivered = d.tally("destination")
		dst.counters.Deferred = d.tally("destination")
		dst.counters.Failed = d.tally("destination")
		dst.counters.Expired = d.tally("destination")
		if _, dup := q.destByName[dst.name]; dup || dst.name == "" {
			d.fail("destination", fmt.Errorf("name %q repeated or empty", dst.name))
			break
		}
		q.destByName[dst.name] = uint32(len(q.dests))
		q.dests = append(q.dests, dst)
	}

	nmsg := d.u64("message count")
	if d.err == nil && (nmsg > 1<<32 || !d.fits("messages", int(nmsg), 12)) {
		d.fail("message count", fmt.Errorf("%d", nmsg))
	}
	if d.err == nil {
		q.store = newMessageStore(int(nmsg))
	}
	for i := uint64(0); i < nmsg && d.err == nil; i++ {
		d.message(q)
	}
	if d.err != nil {
		return nil, d.err
	}
	return q, nil
}

func (d *decoder) message(q *Queue) {
	d.array("message", 12)
	d.buf = d.buf[:0]
	txnEnd := d.appendStr("ss_ta")
	senderEnd := txnEnd + d.appendStr("sender")
	contentEnd := senderEnd + d.appendStr("content")
	dsnOfEnd := contentEnd + d.appendStr("dsn_of")
	m := message{
		receivedAt: d.i64("received"),
		seq:        d.u64("seq"),
		size:       d.i64("size"),
	}
	if d.boolean("held") {
		m.flags |= msgHeld
	}
	if d.boolean("content released") {
		m.flags |= msgContentRemoved
	}
	if d.boolean("double bounce") {
		m.flags |= msgDoubleBounce
	}
	if d.err != nil {
		return
	}
	nExtra, err := d.dec.DecodeMapLen()
	if err != nil {
		d.fail("extras", err)
		return
	}
	if !d.fits("extras", nExtra, 4) {
		return
	}
	for j := 0; j < nExtra && d.err == nil; j++ {
		idx := d.i64("extra index")
		d.array("extra", 2)
		x := rcptExtra{owner: d.str("owner"), orcpt: d.str("original recipient")}
		if idx < 0 || idx > math.MaxInt32 {
			d.fail("extra index", fmt.Errorf("%d", idx))
			return
		}
		// As Apply does: an empty extra is not kept.
		m.setExtra(int32(idx), x)
	}
	nr := d.length("recipients", 1<<26)
	if !d.fits("recipients", nr, 8) {
		return
	}
	rcpts := make([]rcpt, nr)
	for j := 0; j < nr && d.err == nil; j++ {
		d.array("recipient", 7)
		off := len(d.buf)
		n := d.appendStr("address")
		state := d.u64("state")
		flags := d.u64("flags")
		notify := d.u64("notify")
		r := rcpt{
			due:     d.i64("due"),
			lastSeq: d.u64("last seq"),
			addrOff: uint32(off),
			addrLen: uint32(n),
			heapPos: -1,
			state:   RcptState(state),
			flags:   uint8(flags) & rcptDurableFlags,
			notify:  log.Notify(notify),
		}
		dest := d.u64("destination")
		if state >= stateCount || flags > 0xff || notify > 0xff || dest >= uint64(len(q.dests)) {
			d.fail("recipient", fmt.Errorf("state %d flags %d notify %d destination %d out of range", state, flags, notify, dest))
			return
		}
		r.dest = uint32(dest)
		switch {
		case r.state == StateNone:
			r = rcpt{heapPos: -1}
		case !r.state.Terminal():
			// Only a terminal recipient can be owed a DSN; a snapshot
			// that says otherwise would skew the reference count.
			r.flags &^= rcptDSNOwed
		}
		rcpts[j] = r
	}
	if d.err != nil {
		return
	}
	// Rebuild the layout Apply makes: the content reference is stored
	// only when it differs from the ss_ta.
	if bytes.Equal(d.buf[senderEnd:contentEnd], d.buf[:txnEnd]) {
		d.buf = append(d.buf[:senderEnd], d.buf[contentEnd:]...)
		shift := uint32(contentEnd - senderEnd)
		for j := range rcpts {
			rcpts[j].addrOff -= shift
		}
		dsnOfEnd -= contentEnd - senderEnd
		contentEnd = senderEnd
		m.flags |= msgContentIsTxn
	}
	m.strs = string(d.buf)
	m.rcpts = rcpts
	m.txnEnd, m.senderEnd, m.contentEnd, m.dsnOfEnd = uint32(txnEnd), uint32(senderEnd), uint32(contentEnd), uint32(dsnOfEnd)
	if _, dup := q.store.lookup(m.txn()); dup || txnEnd == 0 {
		d.fail("message", fmt.Errorf("ss_ta %q repeated or empty", m.txn()))
		return
	}
	for j := range rcpts {
		r := &rcpts[j]
		switch {
		case r.state.Live():
			m.refs++
		case r.flags&rcptDSNOwed != 0:
			m.refs++
		}
	}
	slot := q.store.alloc()
	*q.store.at(slot) = m
	q.store.insert(slot)
	if m.refs == 0 && m.flags&msgContentRemoved == 0 {
		q.releasable[slot] = struct{}{}
	}
}
