package content

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"time"
)

var errWriterDone = errors.New("cdb: writer already committed or aborted")

// Writer receives one body as it streams in. Bodies of up to InlineLimit
// bytes are kept in memory and appended to the shared segment at Commit;
// a body that grows beyond that is streamed into a segment of its own, so a
// Writer never holds more than InlineLimit bytes. Every Writer must end
// with Commit or Abort. A Writer is not safe for concurrent use.
type Writer struct {
	s    *Store
	env  Envelope
	buf  *[]byte       // inline: the record so far, header space first
	n    int64         // body bytes written
	crc  uint32        // running body checksum once spilled
	file *os.File      // the body's own segment once spilled
	bw   *bufio.Writer // buffers writes to file
	id   uint64        // its segment id
	err  error         // first write error; Commit returns it
	done bool
}

// Create starts a body for the transaction described by env. The server
// writes the body with the Received: header it adds in front, exactly as
// it is to be delivered (docs/content.md: CRLF line ends, not dot-stuffed).
func (s *Store) Create(ctx context.Context, env Envelope) (*Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cdb: create %s: %w", env.Txn, err)
	}
	if s.readOnly {
		return nil, fmt.Errorf("cdb: create %s: %w", env.Txn, ErrReadOnly)
	}
	s.mu.Lock()
	closed, serr := s.closed, s.err
	s.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("cdb: create %s: %w", env.Txn, ErrClosed)
	}
	if serr != nil {
		return nil, serr
	}
	return &Writer{s: s, env: env, buf: s.getBuf()}, nil
}

func (s *Store) getBuf() *[]byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		*b = (*b)[:recordHeaderSize]
		return b
	}
	b := make([]byte, recordHeaderSize, 8<<10)
	return &b
}

func (s *Store) putBuf(b *[]byte) {
	if cap(*b) <= 1<<20 {
		s.bufs.Put(b)
	}
}

// Write appends p to the body.
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errWriterDone
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.file == nil {
		if w.n+int64(len(p)) <= int64(w.s.opts.InlineLimit) {
			*w.buf = append(*w.buf, p...)
			w.n += int64(len(p))
			return len(p), nil
		}
		if err := w.spill(); err != nil {
			w.err = fmt.Errorf("cdb: write %s: %w", w.env.Txn, err)
			return 0, w.err
		}
	}
	n, err := w.bw.Write(p)
	w.crc = crc32Update(w.crc, p[:n])
	w.n += int64(n)
	if err != nil {
		w.err = fmt.Errorf("cdb: write %s: %w", w.env.Txn, err)
	}
	return n, w.err
}

// spill moves the body into a segment of its own: the segment header, a
// placeholder for the record header (written at Commit, when the lengths
// are known), and the body so far.
func (w *Writer) spill() error {
	s := w.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	id := s.allocIDLocked()
	s.mu.Unlock()
	path := s.segmentPath(id)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	body := (*w.buf)[recordHeaderSize:]
	bw.Write(fileHeader{kind: kindReceived, id: id, created: s.now().UnixNano()}.encode())
	bw.Write(make([]byte, recordHeaderSize))
	if _, err := bw.Write(body); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	w.crc = checksum(body)
	s.putBuf(w.buf)
	w.buf = nil
	w.file, w.bw, w.id = f, bw, id
	return nil
}

// Commit stores the envelope beside the body and returns the body's
// reference once both are on stable storage. Concurrent commits share
// syncs. On error nothing is acknowledged: the reference is not returned
// and the body is not kept (if it reached the disk it is released).
func (w *Writer) Commit(ctx context.Context) (string, error) {
	if w.done {
		return "", errWriterDone
	}
	w.done = true
	if w.err == nil {
		w.err = ctx.Err()
	}
	if w.err != nil {
		w.cleanup()
		return "", w.err
	}
	now := w.s.now()
	if w.env.ReceivedAt.IsZero() {
		w.env.ReceivedAt = now
	}
	var ref string
	var err error
	if w.file != nil {
		ref, err = w.commitOwn(now)
	} else {
		ref, err = w.commitInline(ctx, now)
	}
	if err != nil {
		return "", fmt.Errorf("cdb: commit %s: %w", w.env.Txn, err)
	}
	w.s.counters.commits.Add(1)
	return ref, nil
}

func (w *Writer) commitInline(ctx context.Context, now time.Time) (string, error) {
	s := w.s
	rec := *w.buf
	bodyEnd := len(rec)
	rec, err := appendEnvelope(rec, &w.env)
	*w.buf = rec
	if err != nil {
		w.cleanup()
		return "", err
	}
	envLen := len(rec) - bodyEnd
	if envLen > math.MaxUint32 {
		w.cleanup()
		return "", errors.New("envelope too large")
	}
	h := recordHeader{
		bodyLen: w.n,
		envLen:  uint32(envLen),
		stamp:   now.UnixNano(),
		bodyCRC: checksum(rec[recordHeaderSize:bodyEnd]),
		envCRC:  checksum(rec[bodyEnd:]),
	}
	k, check, seq, err := s.appendInline(rec, h)
	w.cleanup()
	if err != nil {
		return "", err
	}
	ref := formatRef(k, check)
	if err := s.waitDurable(ctx, seq); err != nil {
		if ctx.Err() != nil {
			// Not acknowledged, so not kept. If the process dies before
			// this mark is synced, the body is an orphan (docs/content.md).
			if rerr := s.Release(ref); rerr != nil {
				s.log.Debug("releasing abandoned body", "ref", ref, "err", rerr)
			}
		}
		return "", err
	}
	return ref, nil
}

// appendInline writes a whole record to the active segment and returns its
// key, its check and the sequence number to wait for.
func (s *Store) appendInline(rec []byte, h recordHeader) (key, uint32, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return key{}, 0, 0, ErrClosed
	}
	if s.err != nil {
		return key{}, 0, 0, s.err
	}
	if s.active != nil && s.active.count > 0 && s.activeSize+int64(len(rec)) > s.opts.SegmentSize {
		if err := s.sealActiveLocked(); err != nil {
			return key{}, 0, 0, err
		}
	}
	if s.active == nil {
		if err := s.startActiveLocked(); err != nil {
			return key{}, 0, 0, err
		}
	}
	g, off := s.active, s.activeSize
	h.key = key{seg: g.id, off: off}
	check := h.put(rec)
	// On a failed or short write the size does not move, so the next
	// record overwrites the fragment.
	if _, err := s.activeFile.WriteAt(rec, off); err != nil {
		return key{}, 0, 0, err
	}
	length := int64(len(rec))
	s.activeSize += length
	g.count++
	g.dataBytes += length
	g.index = append(g.index, footerEntry{off: off, key: h.key, length: length, stamp: h.stamp, check: check})
	s.written++
	s.kickSync()
	return h.key, check, s.written, nil
}

// startActiveLocked creates the segment that receives inline bodies. Its
// directory entry is synced before any body in it can be acknowledged.
func (s *Store) startActiveLocked() error {
	id := s.allocIDLocked()
	path := s.segmentPath(id)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(fileHeader{kind: kindReceived, id: id, created: s.now().UnixNano()}.encode())
	if err == nil {
		err = syncDir(s.dir)
		s.counters.syncs.Add(1)
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	g := &segment{id: id, kind: kindReceived}
	s.segments[id] = g
	s.active, s.activeFile, s.activeSize = g, f, fileHeaderSize
	return nil
}

// sealActiveLocked writes the footer and trailer of the active segment and
// syncs it, which makes every record in it durable; the next inline commit
// starts a new segment.
func (s *Store) sealActiveLocked() error {
	g, f := s.active, s.activeFile
	s.active, s.activeFile = nil, nil
	if g.count == 0 {
		s.retired = append(s.retired, f)
		delete(s.segments, g.id)
		return os.Remove(s.segmentPath(g.id))
	}
	now := s.now().UnixNano()
	size, err := writeSeal(f, s.activeSize, g.index, now)
	if err == nil {
		err = datasync(f)
		s.counters.syncs.Add(1)
	}
	s.retired = append(s.retired, f)
	s.kickSync()
	if err != nil {
		s.failLocked(err)
		return s.err
	}
	s.durable = s.written
	close(s.roundDone)
	s.roundDone = make(chan struct{})
	g.sealed, g.sealedAt, g.fileSize, g.index = true, now, size, nil
	if g.live() <= 0 {
		s.deleteSegmentLocked(g)
	}
	return nil
}

// commitOwn finishes a body that has a segment of its own: envelope,
// record header, footer and trailer, then a sync of the file and of the
// directory. Large bodies pay these two syncs alone; they are rare and the
// copy dominates their cost anyway.
func (w *Writer) commitOwn(now time.Time) (string, error) {
	s, f := w.s, w.file
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	env, err := appendEnvelope(nil, &w.env)
	if err != nil {
		return fail(err)
	}
	if len(env) > math.MaxUint32 {
		return fail(errors.New("envelope too large"))
	}
	w.bw.Write(env)
	if err := w.bw.Flush(); err != nil {
		return fail(err)
	}
	h := recordHeader{
		key:     key{seg: w.id, off: fileHeaderSize},
		bodyLen: w.n,
		envLen:  uint32(len(env)),
		stamp:   now.UnixNano(),
		bodyCRC: w.crc,
		envCRC:  checksum(env),
	}
	hb := make([]byte, recordHeaderSize)
	check := h.put(hb)
	if _, err := f.WriteAt(hb, fileHeaderSize); err != nil {
		return fail(err)
	}
	entry := footerEntry{off: fileHeaderSize, key: h.key, length: h.recordLen(), stamp: h.stamp, check: check}
	size, err := writeSeal(f, fileHeaderSize+h.recordLen(), []footerEntry{entry}, now.UnixNano())
	if err != nil {
		return fail(err)
	}
	if err := datasync(f); err != nil {
		return fail(err)
	}
	if err := syncDir(s.dir); err != nil {
		return fail(err)
	}
	s.counters.syncs.Add(2)
	if err := f.Close(); err != nil {
		return fail(err)
	}
	w.file = nil
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		os.Remove(s.segmentPath(w.id))
		return "", ErrClosed
	}
	s.segments[w.id] = &segment{
		id: w.id, kind: kindReceived, sealed: true, sealedAt: now.UnixNano(), fileSize: size,
		count: 1, dataBytes: h.recordLen(), single: true,
	}
	return formatRef(h.key, check), nil
}

// Abort discards the body. It is a no-op after Commit.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.cleanup()
}

func (w *Writer) cleanup() {
	if w.buf != nil {
		w.s.putBuf(w.buf)
		w.buf = nil
	}
	if w.file != nil {
		w.file.Close()
		os.Remove(w.file.Name())
		w.file = nil
	}
}

// Size returns the number of body bytes written so far.
func (w *Writer) Size() int64 { return w.n }
