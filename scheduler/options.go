package scheduler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/log/ids"
	"github.com/smx-mta/smx/log/maillog"
	"github.com/smx-mta/smx/scheduler/clock"
	"github.com/smx-mta/smx/smtp/client"
	"github.com/smx-mta/smx/smtp/resolver"
)

// EventLog is what the scheduler needs of the event log; *log.Log has
// both methods.
type EventLog interface {
	// Append makes events durable as one unit and assigns their Seq.
	Append(ctx context.Context, events ...log.Event) (uint64, error)
	// Get returns the event with sequence number seq.
	Get(seq uint64) (log.Event, error)
}

// Feed delivers every durable event of the log, in log order, the
// scheduler's own appends included. The daemon adapts the log's
// subscription to it.
type Feed interface {
	// Next blocks until at least one event with Seq > after is durable
	// and returns the events after it (as many as are ready), or returns
	// ctx's error.
	Next(ctx context.Context, after uint64) ([]log.Event, error)
}

// Resolver routes one recipient address (SMAR); *resolver.Resolver is one.
type Resolver interface {
	Resolve(ctx context.Context, rcpt string) resolver.Result
}

// Content is what the scheduler needs of the content store (CDB).
type Content interface {
	// Open returns a reader of the message stored under ref.
	Open(ref string) (io.ReadCloser, error)
	// Store durably stores the message that write writes, with the
	// envelope of txn (whose Content and ContentSize are not set yet)
	// beside it, and returns its reference and size. The scheduler stores
	// DSNs with it. StoreContent adapts *content.Store.
	Store(ctx context.Context, txn string, env *log.TxnReceived, write func(io.Writer) error) (ref string, size int64, err error)
	// Release tells the store that nothing references ref any more.
	Release(ref string) error
}

// Deliverer opens sessions for routes; *client.Client is one.
type Deliverer interface {
	Connect(ctx context.Context, route client.Route) (*client.Session, []client.Attempt, error)
}

// ConnLimit is one qmgr_conf entry pair oci:/ocm: for an IP address or net:
// the initial and maximum number of concurrent connections. A zero field
// keeps the value of the next shorter match (or the global default).
type ConnLimit struct {
	// Key is the IP address or net as the seed writes it: "127.0.0.1",
	// "10" (the net 10.x.y.z), "10.1", or "" for the default.
	Key     string
	Initial int // oci:
	Max     int // ocm:
}

// Options configures a Scheduler. The zero value of every field means the
// documented default; fields without a default are marked required.
type Options struct {
	// AQMaxEntries is AQ_max_entries: the most recipients AQ holds.
	// Default 8192.
	AQMaxEntries int
	// DeferredReserve is the share of AQ kept for recipients from DEFEDB
	// so that a flood of new mail never starves the deferred queue (seed
	// 004: "reserve a certain amount (e.g., ten per cent)"). Default 0.1.
	DeferredReserve float64
	// DeferredCap is the largest share of AQ recipients from DEFEDB may
	// use so that they never starve new mail (seed 004: "e.g., seventy
	// per cent"). Default 0.7.
	DeferredCap float64
	// IQDBMaxEntries is IQDB max_cache_entries: the IQDB size at which
	// LoadState tells the server to refuse new mail. Default 16384.
	IQDBMaxEntries int

	// QueueReturnTimeout is queue_return_timeout: recipients still queued
	// after it expire (status 4.4.7) and bounce. Default 5 days.
	QueueReturnTimeout time.Duration
	// QueueDelayTimeout is queue_delay_timeout: a delay warning is sent
	// once for a recipient deferred after being queued this long. Set it
	// above QueueReturnTimeout to turn warnings off. Default 4 hours.
	QueueDelayTimeout time.Duration
	// RetryMinDelay and RetryMaxDelay are retry_min_delay and
	// retry_max_delay: the next try after a temporary failure is the time
	// the mail has already spent in the queue, kept between the two, with
	// RetryFuzz. Defaults 5 minutes and 1 hour.
	RetryMinDelay time.Duration
	RetryMaxDelay time.Duration
	// RetryFuzz is the largest share by which a retry delay is moved at
	// random, so that retries do not fall in step with a periodic outage
	// (seed 004, "Next Retry Time"). Default 0.1; negative means none.
	RetryFuzz float64

	// MergeDelayMax is DSN_handling merge_delay_max: how long failed
	// recipients of one message wait for others to fail too so that they
	// share one bounce. Default 60 seconds; negative means no wait (a
	// bounce goes as soon as a recipient fails; smx.conf's 0).
	MergeDelayMax time.Duration
	// MaxErrorsPerDSN is DSN_handling max_errors_per_DSN: the most
	// recipients one DSN reports on. Default 16.
	MaxErrorsPerDSN int
	// HeaderOnly is the DSN_handling flag header_only: bounces return the
	// header only. Without it the first bounce of a message returns the
	// whole message (unless RET=HDRS) and later ones the header.
	HeaderOnly bool
	// DoubleBounceAddress is double_bounce_address: where a bounce of a
	// message from the null sender goes. Default postmaster@Hostname.
	DoubleBounceAddress string

	// InitialConnections and MaxConnections are smtpc initial_connections
	// and max_connections: the slow start window per destination IP
	// starts at the first and grows by one per successful transaction up
	// to the second; a failed connection halves it. Defaults 10 and 100
	// (the seed's -c and -C).
	InitialConnections int
	MaxConnections     int
	// ConnLimits are the qmgr_conf oci:/ocm: entries per IP or net.
	ConnLimits []ConnLimit
	// SMTPMaxRcptsPerTransaction and LMTPMaxRcptsPerTransaction are smtpc
	// smtp_max_rcpts_per_transaction and lmtp_max_rcpts_per_transaction.
	// Defaults 100 and 100.
	SMTPMaxRcptsPerTransaction int
	LMTPMaxRcptsPerTransaction int
	// NoReuseConnection turns off the flag reuse_connection, which is on
	// by default here: an open session is used for further transactions
	// to the same destination, with RSET between them.
	NoReuseConnection bool
	// ConnectionCacheTimeout is the qmgr_conf octo: how long an idle
	// session waits in the outgoing connection cache. Default 5 seconds.
	ConnectionCacheTimeout time.Duration
	// OCCMaxEntries is OCC_max_entries: the most idle sessions kept.
	// Default 1024.
	OCCMaxEntries int

	// SMARTimeout is SMAR_timeout: how long one resolution may take.
	// Default 2 minutes.
	SMARTimeout time.Duration
	// SchedulerTimeout is scheduler_timeout: a recipient that stays in AQ
	// this long without an outcome (never resolved, or never given to a
	// delivery agent) is deferred. Default 1 hour.
	SchedulerTimeout time.Duration
	// DeliveryTimeout is delivery_timeout: the longest one delivery
	// attempt may take. Default 1 hour.
	DeliveryTimeout time.Duration
	// MaxResolvers bounds concurrent resolutions. Default 32.
	MaxResolvers int

	// MinDiskSpace and OKDiskSpace are min_disk_space and ok_disk_space
	// in bytes (the seed counts KB): below the first LoadState refuses new
	// mail until free space is back above the second. Defaults 100 MiB
	// and 200 MiB.
	MinDiskSpace int64
	OKDiskSpace  int64
	// DiskFree returns the free bytes of the queue's file system. Nil
	// leaves disk space out of LoadState.
	DiskFree func() (int64, error)

	// Hostname is this host's name: Reporting-MTA and MAILER-DAEMON of
	// DSNs. Default os.Hostname().
	Hostname string

	// Log is the event log (required).
	Log EventLog
	// Feed delivers the log's events (required).
	Feed Feed
	// Resolver routes recipients (required).
	Resolver Resolver
	// Client delivers (required).
	Client Deliverer
	// Content is the content store (required).
	Content Content
	// NewTxnID returns a fresh ss_ta for a DSN (required); the daemon
	// passes the SMTP server's id sequence.
	NewTxnID func() (string, error)
	// ClientIDs makes da_sess and da_ta. Default: process 0, from 0.
	ClientIDs *ids.ClientGenerator
	// Clock is the time. Default clock.Real.
	Clock clock.Clock
	// Rand is the source of the retry fuzz. Default: seeded at random.
	// The scheduler guards it; nobody else may use it.
	Rand *rand.Rand
	// MailLog receives the postmaster's lines. Default: none.
	MailLog *maillog.Logger
	// Logger receives debug logs. Default: discard.
	Logger *slog.Logger
}

// Defaults of Options.
const (
	DefaultAQMaxEntries           = 8192
	DefaultDeferredReserve        = 0.1
	DefaultDeferredCap            = 0.7
	DefaultIQDBMaxEntries         = 16384
	DefaultQueueReturnTimeout     = 5 * 24 * time.Hour
	DefaultQueueDelayTimeout      = 4 * time.Hour
	DefaultRetryMinDelay          = 5 * time.Minute
	DefaultRetryMaxDelay          = time.Hour
	DefaultRetryFuzz              = 0.1
	DefaultMergeDelayMax          = time.Minute
	DefaultMaxErrorsPerDSN        = 16
	DefaultInitialConnections     = 10
	DefaultMaxConnections         = 100
	DefaultMaxRcptsPerTransaction = 100
	DefaultConnectionCacheTimeout = 5 * time.Second
	DefaultOCCMaxEntries          = 1024
	DefaultSMARTimeout            = 2 * time.Minute
	DefaultSchedulerTimeout       = time.Hour
	DefaultDeliveryTimeout        = time.Hour
	DefaultMaxResolvers           = 32
	DefaultMinDiskSpace           = 100 << 20
	DefaultOKDiskSpace            = 200 << 20
)

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	setInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	setDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	setInt(&o.AQMaxEntries, DefaultAQMaxEntries)
	if o.DeferredReserve <= 0 {
		o.DeferredReserve = DefaultDeferredReserve
	}
	if o.DeferredCap <= 0 {
		o.DeferredCap = DefaultDeferredCap
	}
	setInt(&o.IQDBMaxEntries, DefaultIQDBMaxEntries)
	setDur(&o.QueueReturnTimeout, DefaultQueueReturnTimeout)
	setDur(&o.QueueDelayTimeout, DefaultQueueDelayTimeout)
	setDur(&o.RetryMinDelay, DefaultRetryMinDelay)
	setDur(&o.RetryMaxDelay, DefaultRetryMaxDelay)
	if o.RetryMaxDelay < o.RetryMinDelay {
		o.RetryMaxDelay = o.RetryMinDelay
	}
	switch {
	case o.RetryFuzz == 0:
		o.RetryFuzz = DefaultRetryFuzz
	case o.RetryFuzz < 0:
		o.RetryFuzz = 0
	}
	switch {
	case o.MergeDelayMax == 0:
		o.MergeDelayMax = DefaultMergeDelayMax
	case o.MergeDelayMax < 0:
		o.MergeDelayMax = 0
	}
	setInt(&o.MaxErrorsPerDSN, DefaultMaxErrorsPerDSN)
	setInt(&o.InitialConnections, DefaultInitialConnections)
	setInt(&o.MaxConnections, DefaultMaxConnections)
	if o.MaxConnections < o.InitialConnections {
		o.MaxConnections = o.InitialConnections
	}
	setInt(&o.SMTPMaxRcptsPerTransaction, DefaultMaxRcptsPerTransaction)
	setInt(&o.LMTPMaxRcptsPerTransaction, DefaultMaxRcptsPerTransaction)
	setDur(&o.ConnectionCacheTimeout, DefaultConnectionCacheTimeout)
	setInt(&o.OCCMaxEntries, DefaultOCCMaxEntries)
	setDur(&o.SMARTimeout, DefaultSMARTimeout)
	setDur(&o.SchedulerTimeout, DefaultSchedulerTimeout)
	setDur(&o.DeliveryTimeout, DefaultDeliveryTimeout)
	setInt(&o.MaxResolvers, DefaultMaxResolvers)
	if o.MinDiskSpace <= 0 {
		o.MinDiskSpace = DefaultMinDiskSpace
	}
	if o.OKDiskSpace < o.MinDiskSpace {
		o.OKDiskSpace = max(DefaultOKDiskSpace, o.MinDiskSpace)
	}
	if o.Hostname == "" {
		o.Hostname = hostname()
	}
	if o.DoubleBounceAddress == "" {
		o.DoubleBounceAddress = "postmaster@" + o.Hostname
	}
	if o.ClientIDs == nil {
		o.ClientIDs = ids.NewClientGenerator(0, 0)
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Rand == nil {
		o.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if o.MailLog == nil {
		o.MailLog = maillog.Discard()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// connLimits finds the oci:/ocm: limits for a destination IP with the
// seed's lookup order for IPv4 (A.B.C.D, A.B.C, A.B, A, then the default).
type connLimits struct {
	byKey           map[string]ConnLimit
	initial, maxima int
}

func newConnLimits(o *Options) (*connLimits, error) {
	cl := &connLimits{byKey: map[string]ConnLimit{}, initial: o.InitialConnections, maxima: o.MaxConnections}
	for _, l := range o.ConnLimits {
		if l.Key != "" {
			if _, err := netip.ParseAddr(l.Key); err != nil && !validNetKey(l.Key) {
				return nil, fmt.Errorf("scheduler: oci/ocm key %q is neither an IP address nor an IPv4 net", l.Key)
			}
		}
		if l.Initial < 0 || l.Max < 0 {
			return nil, fmt.Errorf("scheduler: negative connection limit for %q", l.Key)
		}
		cl.byKey[l.Key] = l
	}
	if d, ok := cl.byKey[""]; ok {
		if d.Initial > 0 {
			cl.initial = d.Initial
		}
		if d.Max > 0 {
			cl.maxima = d.Max
		}
	}
	return cl, nil
}

// validNetKey reports whether key is the leading one to three octets of
// an IPv4 address ("10", "10.1", "10.1.2").
func validNetKey(key string) bool {
	parts := strings.Split(key, ".")
	if len(parts) > 3 {
		return false
	}
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 255 {
			return false
		}
	}
	return true
}

// lookup returns the initial and maximum connections for ip (an address
// or a socket path).
func (cl *connLimits) lookup(ip string) (initial, maximum int) {
	initial, maximum = 0, 0
	keys := []string{ip}
	if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
		parts := strings.Split(ip, ".")
		for n := 3; n >= 1; n-- {
			keys = append(keys, strings.Join(parts[:n], "."))
		}
	}
	for _, k := range keys {
		l, ok := cl.byKey[k]
		if !ok {
			continue
		}
		if initial == 0 && l.Initial > 0 {
			initial = l.Initial
		}
		if maximum == 0 && l.Max > 0 {
			maximum = l.Max
		}
	}
	if initial == 0 {
		initial = cl.initial
	}
	if maximum == 0 {
		maximum = cl.maxima
	}
	if maximum < initial {
		maximum = initial
	}
	return initial, maximum
}
