// Package metrics keeps smxd's counters, gauges and histograms and writes
// them in the Prometheus text exposition format (version 0.0.4) for the
// optional metrics listener.
//
// The format is a few lines of text per metric, so it is written here
// rather than with github.com/prometheus/client_golang: that library
// would add a dependency tree (protobuf, procfs) for what is a page of
// code, and smxd needs none of its registries, pushers or process
// collectors.
//
// The package owns only its own values; the daemon decides what is
// counted.
package metrics

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Registry holds the metric families in the order they were registered.
type Registry struct {
	mu       sync.Mutex
	families []family
	names    map[string]bool
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry { return &Registry{names: map[string]bool{}} }

type family interface {
	write(w *bufio.Writer)
}

func (r *Registry) add(name string, f family) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.names[name] {
		panic("metrics: " + name + " registered twice")
	}
	r.names[name] = true
	r.families = append(r.families, f)
}

// WriteTo writes every metric in the text exposition format.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	fams := slices.Clone(r.families)
	r.mu.Unlock()
	cw := &countingWriter{w: w}
	bw := bufio.NewWriter(cw)
	for _, f := range fams {
		f.write(bw)
	}
	err := bw.Flush()
	return cw.n, err
}

// ContentType is the content type of the exposition format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Handler serves the metrics over HTTP.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", ContentType)
		r.WriteTo(w)
	})
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func header(w *bufio.Writer, name, help, kind string) {
	w.WriteString("# HELP ")
	w.WriteString(name)
	w.WriteByte(' ')
	w.WriteString(escapeHelp(help))
	w.WriteString("\n# TYPE ")
	w.WriteString(name)
	w.WriteByte(' ')
	w.WriteString(kind)
	w.WriteByte('\n')
}

func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`).Replace(s)
}

// labelString renders {a="x",b="y"} (empty for no labels); extra is one
// more pair, for histogram buckets.
func labelString(names, values []string, extraName, extraValue string) string {
	if len(names) == 0 && extraName == "" {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteString(`="`)
		b.WriteString(escapeLabel(values[i]))
		b.WriteByte('"')
	}
	if extraName != "" {
		if len(names) > 0 {
			b.WriteByte(',')
		}
		b.WriteString(extraName)
		b.WriteString(`="`)
		b.WriteString(extraValue)
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// vec holds the children of a family by their label values.
type vec[T any] struct {
	labels []string
	mu     sync.Mutex
	kids   map[string]*T
	order  []string
	values map[string][]string
	make   func() *T
}

func newVec[T any](labels []string, mk func() *T) *vec[T] {
	return &vec[T]{labels: labels, kids: map[string]*T{}, values: map[string][]string{}, make: mk}
}

func (v *vec[T]) with(values ...string) *T {
	if len(values) != len(v.labels) {
		panic(fmt.Sprintf("metrics: %d label values for labels %v", len(values), v.labels))
	}
	key := strings.Join(values, "\x00")
	v.mu.Lock()
	defer v.mu.Unlock()
	k, ok := v.kids[key]
	if !ok {
		k = v.make()
		v.kids[key] = k
		v.order = append(v.order, key)
		v.values[key] = slices.Clone(values)
	}
	return k
}

// each calls f for every child in a stable order (sorted by labels).
func (v *vec[T]) each(f func(values []string, k *T)) {
	v.mu.Lock()
	keys := slices.Clone(v.order)
	v.mu.Unlock()
	slices.Sort(keys)
	for _, key := range keys {
		v.mu.Lock()
		k, values := v.kids[key], v.values[key]
		v.mu.Unlock()
		f(values, k)
	}
}

// Counter is a monotonically increasing count.
type Counter struct{ n atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.n.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.n.Add(n) }

// Value returns the count.
func (c *Counter) Value() uint64 { return c.n.Load() }

// CounterVec is a family of counters with labels.
type CounterVec struct {
	name, help string
	v          *vec[Counter]
}

// Counter registers a counter family; with no labels it has one child,
// With().
func (r *Registry) Counter(name, help string, labels ...string) *CounterVec {
	c := &CounterVec{name: name, help: help, v: newVec(labels, func() *Counter { return new(Counter) })}
	r.add(name, c)
	return c
}

// With returns the counter with these label values, creating it at zero.
func (c *CounterVec) With(values ...string) *Counter { return c.v.with(values...) }

func (c *CounterVec) write(w *bufio.Writer) {
	header(w, c.name, c.help, "counter")
	c.v.each(func(values []string, k *Counter) {
		fmt.Fprintf(w, "%s%s %d\n", c.name, labelString(c.v.labels, values, "", ""), k.Value())
	})
}

// Gauge is a value that goes up and down.
type Gauge struct{ bits atomic.Uint64 }

// Set sets the value.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Value returns the value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

// GaugeVec is a family of gauges with labels.
type GaugeVec struct {
	name, help string
	v          *vec[Gauge]
}

// Gauge registers a gauge family.
func (r *Registry) Gauge(name, help string, labels ...string) *GaugeVec {
	g := &GaugeVec{name: name, help: help, v: newVec(labels, func() *Gauge { return new(Gauge) })}
	r.add(name, g)
	return g
}

// With returns the gauge with these label values.
func (g *GaugeVec) With(values ...string) *Gauge { return g.v.with(values...) }

func (g *GaugeVec) write(w *bufio.Writer) {
	header(w, g.name, g.help, "gauge")
	g.v.each(func(values []string, k *Gauge) {
		fmt.Fprintf(w, "%s%s %s\n", g.name, labelString(g.v.labels, values, "", ""), formatFloat(k.Value()))
	})
}

// Sample is one value of a collected family.
type Sample struct {
	Labels []string // values, in the order of the family's label names
	Value  float64
}

type collected struct {
	name, help, kind string
	labels           []string
	collect          func() []Sample
}

// Collect registers a family whose samples are computed when the metrics
// are read; kind is "gauge" or "counter".
func (r *Registry) Collect(name, help, kind string, labels []string, collect func() []Sample) {
	r.add(name, &collected{name: name, help: help, kind: kind, labels: labels, collect: collect})
}

func (c *collected) write(w *bufio.Writer) {
	header(w, c.name, c.help, c.kind)
	for _, s := range c.collect() {
		fmt.Fprintf(w, "%s%s %s\n", c.name, labelString(c.labels, s.Labels, "", ""), formatFloat(s.Value))
	}
}

// Histogram counts observations in buckets.
type Histogram struct {
	bounds  []float64
	counts  []atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sumBits atomic.Uint64
	count   atomic.Uint64
}

// Observe adds one observation.
func (h *Histogram) Observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v)
	h.counts[i].Add(1)
	for {
		old := h.sumBits.Load()
		if h.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			break
		}
	}
	h.count.Add(1)
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 { return h.count.Load() }

// HistogramVec is a family of histograms with labels.
type HistogramVec struct {
	name, help string
	v          *vec[Histogram]
	bounds     []float64
}

// Histogram registers a histogram family with the upper bounds of its
// buckets (sorted; +Inf is added).
func (r *Registry) Histogram(name, help string, bounds []float64, labels ...string) *HistogramVec {
	if !slices.IsSorted(bounds) {
		panic("metrics: bucket bounds of " + name + " not sorted")
	}
	h := &HistogramVec{name: name, help: help, bounds: bounds}
	h.v = newVec(labels, func() *Histogram {
		return &Histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
	})
	r.add(name, h)
	return h
}

// With returns the histogram with these label values.
func (h *HistogramVec) With(values ...string) *Histogram { return h.v.with(values...) }

func (h *HistogramVec) write(w *bufio.Writer) {
	header(w, h.name, h.help, "histogram")
	h.v.each(func(values []string, k *Histogram) {
		// Read the buckets first and derive the count from them, so the
		// +Inf bucket and _count always agree within one scrape.
		var cum uint64
		for i, b := range h.bounds {
			cum += k.counts[i].Load()
			fmt.Fprintf(w, "%s_bucket%s %d\n", h.name, labelString(h.v.labels, values, "le", formatFloat(b)), cum)
		}
		cum += k.counts[len(h.bounds)].Load()
		fmt.Fprintf(w, "%s_bucket%s %d\n", h.name, labelString(h.v.labels, values, "le", "+Inf"), cum)
		fmt.Fprintf(w, "%s_sum%s %s\n", h.name, labelString(h.v.labels, values, "", ""), formatFloat(math.Float64frombits(k.sumBits.Load())))
		fmt.Fprintf(w, "%s_count%s %d\n", h.name, labelString(h.v.labels, values, "", ""), cum)
	})
}

// ExponentialBuckets returns n bounds starting at start, each factor times
// the one before.
func ExponentialBuckets(start, factor float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = start
		start *= factor
	}
	return out
}
