package replay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
)

// Point is a position in the log: after the event Seq, or after the last
// event whose Time is not after Time. The zero Point is the end of the log.
// When both are set, the earlier of the two wins.
type Point struct {
	Seq  uint64
	Time time.Time
}

// IsEnd reports whether p is the end of the log.
func (p Point) IsEnd() bool { return p.Seq == 0 && p.Time.IsZero() }

// String renders p as ParsePoint reads it.
func (p Point) String() string {
	switch {
	case p.IsEnd():
		return "end"
	case p.Time.IsZero():
		return strconv.FormatUint(p.Seq, 10)
	case p.Seq == 0:
		return p.Time.Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("%d or %s", p.Seq, p.Time.Format(time.RFC3339Nano))
}

// includes reports whether e lies at or before p.
func (p Point) includes(e log.Event) bool {
	if p.Seq != 0 && e.Seq > p.Seq {
		return false
	}
	return p.Time.IsZero() || !e.Time.After(p.Time)
}

// reaches reports whether e lies at or after p taken as a start: its
// sequence number is at least p.Seq, or its time at least p.Time.
func (p Point) reaches(e log.Event) bool {
	return (p.Seq != 0 && e.Seq >= p.Seq) || (!p.Time.IsZero() && !e.Time.Before(p.Time))
}

// timeLayouts are the time forms ParsePoint accepts, besides RFC 3339.
var timeLayouts = []string{
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05",
	"2006-01-02T15:04",
	"2006-01-02 15:04",
	"2006-01-02",
}

// ParsePoint reads a position as smxctl's --from, --to and --at take it: a
// sequence number ("1234"), a time in RFC 3339 ("2025-03-01T14:05:00Z"), a
// local time ("2025-03-01 14:05", "2025-03-01"; in loc), or a duration
// before now ("-90m", "-2h").
func ParsePoint(s string, now time.Time, loc *time.Location) (Point, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Point{}, errors.New("empty position: want a sequence number or a time")
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		if n == 0 {
			return Point{}, errors.New("sequence numbers start at 1")
		}
		return Point{Seq: n}, nil
	}
	if strings.HasPrefix(s, "-") {
		d, err := time.ParseDuration(s[1:])
		if err != nil {
			return Point{}, fmt.Errorf("position %q: %w", s, err)
		}
		return Point{Time: now.Add(-d)}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return Point{Time: t}, nil
	}
	for _, layout := range timeLayouts {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return Point{Time: t}, nil
		}
	}
	return Point{}, fmt.Errorf("position %q: want a sequence number, an RFC 3339 time, \"YYYY-MM-DD[ HH:MM[:SS]]\" or \"-DURATION\"", s)
}

// MaxAnomalies is how many anomalies a Replay keeps; it counts the rest.
const MaxAnomalies = 1000

// Replay rebuilds the projections from a Source: the newest usable snapshot,
// then the events after it. Run can be called again to move further on.
type Replay struct {
	src Source
	q   *projections.Queue

	// FromSnapshot is the sequence number of the snapshot the rebuild
	// started from; 0 when it started from an empty queue.
	FromSnapshot uint64
	// SkippedSnapshots are the newer snapshots passed over, with why.
	SkippedSnapshots []error
	// Applied counts the events applied after the snapshot.
	Applied int
	// Anomalies are the first MaxAnomalies anomalies Apply reported;
	// AnomalyCount counts them all.
	Anomalies    []*projections.Anomaly
	AnomalyCount int

	// Hooks for Verify.
	onAnomaly  func(*projections.Anomaly, log.Event)
	afterApply func(log.Event, *projections.Queue)
}

// Start begins a rebuild that is to reach at: it restores the newest
// snapshot that verifies and lies at or before at, or starts from an empty
// queue when there is none.
func Start(src Source, at Point) (*Replay, error) {
	return start(src, func(seq uint64, t time.Time) error {
		if at.Seq != 0 && seq > at.Seq {
			return fmt.Errorf("covers up to %d, beyond %d", seq, at.Seq)
		}
		if !at.Time.IsZero() && t.After(at.Time) {
			return fmt.Errorf("covers events up to %s, beyond %s", t.Format(time.RFC3339), at.Time.Format(time.RFC3339))
		}
		return nil
	})
}

// StartBefore begins a rebuild that is to stop just before from: it
// restores the newest snapshot that verifies and covers no event at or
// after from.
func StartBefore(src Source, from Point) (*Replay, error) {
	return start(src, func(seq uint64, t time.Time) error {
		if from.Seq != 0 && seq >= from.Seq {
			return fmt.Errorf("covers up to %d, not before %d", seq, from.Seq)
		}
		if !from.Time.IsZero() && !t.Before(from.Time) {
			return fmt.Errorf("covers events up to %s, not before %s", t.Format(time.RFC3339), from.Time.Format(time.RFC3339))
		}
		return nil
	})
}

func start(src Source, fits func(seq uint64, t time.Time) error) (*Replay, error) {
	r := &Replay{src: src}
	var restored *projections.Queue
	snap, err := src.LatestSnapshot(func(seq uint64, data []byte) error {
		q, err := projections.RestoreBytes(data)
		if err != nil {
			return err
		}
		if q.Seq() != seq {
			return fmt.Errorf("holds the state at %d", q.Seq())
		}
		if err := fits(seq, q.Time()); err != nil {
			return err
		}
		restored = q
		return nil
	})
	switch {
	case err == nil:
		r.q = restored
		r.FromSnapshot = snap.Seq
	case errors.Is(err, log.ErrNoSnapshot):
		r.q = projections.New()
	default:
		return nil, fmt.Errorf("replay: read snapshots: %w", err)
	}
	r.SkippedSnapshots = snap.Skipped
	return r, nil
}

// Queue returns the state rebuilt so far. It belongs to the Replay until the
// caller stops calling Run.
func (r *Replay) Queue() *projections.Queue { return r.q }

// Use makes later Runs read from src: smxctl reopens the log to follow it.
func (r *Replay) Use(src Source) { r.src = src }

// Run applies the events after the queue's position up to and including
// to (the end of the log for the zero Point). When visit is not nil it is
// called with each event before the event is applied, so that it sees the
// state the event acts on; an error from visit stops the run. A damaged or
// missing record stops the run with an error that names its sequence
// number.
func (r *Replay) Run(ctx context.Context, to Point, visit func(e log.Event, q *projections.Queue) error) error {
	return r.run(ctx, func(e log.Event) bool { return !to.includes(e) }, visit)
}

// RunBefore is Run up to the last event before from.
func (r *Replay) RunBefore(ctx context.Context, from Point, visit func(e log.Event, q *projections.Queue) error) error {
	return r.run(ctx, from.reaches, visit)
}

func (r *Replay) run(ctx context.Context, stop func(log.Event) bool, visit func(e log.Event, q *projections.Queue) error) error {
	it := r.src.Iter(r.q.Seq() + 1)
	defer it.Close()
	n := 0
	for it.Next() {
		e := it.Event()
		if stop(e) {
			break
		}
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if visit != nil {
			if err := visit(e, r.q); err != nil {
				return err
			}
		}
		if err := r.q.Apply(e); err != nil {
			for _, a := range projections.Anomalies(err) {
				if r.onAnomaly != nil {
					r.onAnomaly(a, e)
				}
				if len(r.Anomalies) < MaxAnomalies {
					r.Anomalies = append(r.Anomalies, a)
				}
				r.AnomalyCount++
			}
		}
		if r.afterApply != nil {
			r.afterApply(e, r.q)
		}
		r.Applied++
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("replay: after seq %d: %w", r.q.Seq(), err)
	}
	return nil
}

// Rebuild returns the projections as of at (the end of the log for the
// zero Point): the newest usable snapshot at or before it plus the events
// up to it. For a time, the rebuild stops before the first event whose time
// is after it.
func Rebuild(ctx context.Context, src Source, at Point) (*Replay, error) {
	r, err := Start(src, at)
	if err != nil {
		return nil, err
	}
	if err := r.Run(ctx, at, nil); err != nil {
		return r, err
	}
	return r, nil
}

// RebuildBefore returns the projections just before from: the state the
// first event at or after from acts on.
func RebuildBefore(ctx context.Context, src Source, from Point) (*Replay, error) {
	r, err := StartBefore(src, from)
	if err != nil {
		return nil, err
	}
	if err := r.RunBefore(ctx, from, nil); err != nil {
		return r, err
	}
	return r, nil
}

// Recover is what smxd does at start: the state at the end of the log, from
// the newest good snapshot and the tail after it. Anomalies do not stop it
// (the Replay lists them for the daemon to log); a damaged record does.
func Recover(ctx context.Context, src Source) (*Replay, error) {
	return Rebuild(ctx, src, Point{})
}

// SaveSnapshot serializes q and stores it as the snapshot at q.Seq(). smxd
// calls it periodically (snapshot_interval) and at a clean shutdown, from
// the goroutine that owns q.
func SaveSnapshot(dst SnapshotSaver, q *projections.Queue) error {
	var b bytes.Buffer
	if err := q.Snapshot(&b); err != nil {
		return err
	}
	if err := dst.SaveSnapshot(q.Seq(), b.Bytes()); err != nil {
		return fmt.Errorf("replay: save snapshot at %d: %w", q.Seq(), err)
	}
	return nil
}
