package mesh

import (
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Metrics are the proxy's counters, written in the Prometheus text format by hand: the
// official client library would more than double the binary for five series.
type Metrics struct {
	mu        sync.Mutex
	requests  map[string]uint64 // direction -> count
	errors    map[string]uint64
	buckets   []float64 // seconds, upper bounds
	counts    map[string][]uint64
	sums      map[string]float64
	Upstreams atomic.Int64 // open upstream connections
}

// NewMetrics returns empty metrics with latency buckets from 0.5 ms to 5 s.
func NewMetrics() *Metrics {
	return &Metrics{
		requests: map[string]uint64{}, errors: map[string]uint64{},
		buckets: []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		counts:  map[string][]uint64{}, sums: map[string]float64{},
	}
}

// Observe records one request in a direction (outbound, inbound).
func (m *Metrics) Observe(direction string, d time.Duration, failed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[direction]++
	if failed {
		m.errors[direction]++
	}
	if m.counts[direction] == nil {
		m.counts[direction] = make([]uint64, len(m.buckets))
	}
	s := d.Seconds()
	for i, upper := range m.buckets {
		if s <= upper {
			m.counts[direction][i]++
		}
	}
	m.sums[direction] += s
}

// Write prints the metrics in the Prometheus text exposition format.
func (m *Metrics) Write(w io.Writer, endpoints int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dirs := make([]string, 0, len(m.requests))
	for d := range m.requests {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	fmt.Fprintln(w, "# TYPE meshproxy_requests_total counter")
	for _, d := range dirs {
		fmt.Fprintf(w, "meshproxy_requests_total{direction=%q} %d\n", d, m.requests[d])
	}
	fmt.Fprintln(w, "# TYPE meshproxy_errors_total counter")
	for _, d := range dirs {
		fmt.Fprintf(w, "meshproxy_errors_total{direction=%q} %d\n", d, m.errors[d])
	}
	fmt.Fprintln(w, "# TYPE meshproxy_request_duration_seconds histogram")
	for _, d := range dirs {
		for i, upper := range m.buckets {
			fmt.Fprintf(w, "meshproxy_request_duration_seconds_bucket{direction=%q,le=\"%g\"} %d\n", d, upper, m.counts[d][i])
		}
		fmt.Fprintf(w, "meshproxy_request_duration_seconds_bucket{direction=%q,le=\"+Inf\"} %d\n", d, m.requests[d])
		fmt.Fprintf(w, "meshproxy_request_duration_seconds_sum{direction=%q} %g\n", d, m.sums[d])
		fmt.Fprintf(w, "meshproxy_request_duration_seconds_count{direction=%q} %d\n", d, m.requests[d])
	}
	fmt.Fprintln(w, "# TYPE meshproxy_upstream_connections gauge")
	fmt.Fprintf(w, "meshproxy_upstream_connections %d\n", m.Upstreams.Load())
	fmt.Fprintln(w, "# TYPE meshproxy_endpoints gauge")
	fmt.Fprintf(w, "meshproxy_endpoints %d\n", endpoints)
}

// countedConn decrements the open-connection gauge once, when closed.
type countedConn struct {
	net.Conn
	gauge *atomic.Int64
	once  sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.gauge.Add(-1) })
	return c.Conn.Close()
}
