package metrics

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"
)

func sample() *Registry {
	r := NewRegistry()
	conns := r.Counter("smx_smtp_connections_total", "SMTP connections accepted.", "listener")
	conns.With("MTA").Add(3)
	conns.With("MSA").Inc()
	r.Gauge("smx_up", "1 while smxd runs.").With().Set(1)
	h := r.Histogram("smx_delivery_seconds", "Delivery attempt duration.", []float64{0.01, 0.1, 1}, "mailer")
	for _, v := range []float64{0.005, 0.01, 0.05, 2} {
		h.With("esmtp").Observe(v)
	}
	r.Collect("smx_queue_recipients", "Recipients by queue.", "gauge", []string{"queue"}, func() []Sample {
		return []Sample{{Labels: []string{"IQDB"}, Value: 2}, {Labels: []string{`odd"one\`}, Value: 0.5}}
	})
	return r
}

func TestExposition(t *testing.T) {
	var b bytes.Buffer
	_, err := sample().WriteTo(&b)
	require.NoError(t, err)
	require.Equal(t, `# HELP smx_smtp_connections_total SMTP connections accepted.
# TYPE smx_smtp_connections_total counter
smx_smtp_connections_total{listener="MSA"} 1
smx_smtp_connections_total{listener="MTA"} 3
# HELP smx_up 1 while smxd runs.
# TYPE smx_up gauge
smx_up 1
# HELP smx_delivery_seconds Delivery attempt duration.
# TYPE smx_delivery_seconds histogram
smx_delivery_seconds_bucket{mailer="esmtp",le="0.01"} 2
smx_delivery_seconds_bucket{mailer="esmtp",le="0.1"} 3
smx_delivery_seconds_bucket{mailer="esmtp",le="1"} 3
smx_delivery_seconds_bucket{mailer="esmtp",le="+Inf"} 4
smx_delivery_seconds_sum{mailer="esmtp"} 2.065
smx_delivery_seconds_count{mailer="esmtp"} 4
# HELP smx_queue_recipients Recipients by queue.
# TYPE smx_queue_recipients gauge
smx_queue_recipients{queue="IQDB"} 2
smx_queue_recipients{queue="odd\"one\\"} 0.5
`, b.String())
}

// TestParsesWithPrometheus reads the output back with Prometheus's own
// text parser, which nobody here wrote.
func TestParsesWithPrometheus(t *testing.T) {
	srv := httptest.NewServer(sample().Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, ContentType, resp.Header.Get("Content-Type"))
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	require.Len(t, fams, 4)
	h := fams["smx_delivery_seconds"].Metric[0].GetHistogram()
	require.Equal(t, uint64(4), h.GetSampleCount())
	require.Equal(t, uint64(3), h.Bucket[1].GetCumulativeCount())
	require.Equal(t, float64(3), fams["smx_smtp_connections_total"].Metric[1].GetCounter().GetValue())

	post, err := http.Post(srv.URL, "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	io.Copy(io.Discard, post.Body)
	post.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, post.StatusCode)
}

func TestConcurrentUpdates(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("c_total", "c")
	h := r.Histogram("h", "h", ExponentialBuckets(0.001, 10, 4))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 1000 {
				c.With().Inc()
				h.With().Observe(float64(i) / 1000)
				r.WriteTo(io.Discard)
			}
		})
	}
	wg.Wait()
	require.Equal(t, uint64(8000), c.With().Value())
	require.Equal(t, uint64(8000), h.With().Count())
	require.Panics(t, func() { r.Counter("c_total", "again") })
}
