package mesh

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Metrics are the proxy's counters, written in the Prometheus text format by hand: the
// official client library would more than double the binary for five series. Observing a
// request is a few atomic adds (it happens on every request; a scrape is rare).
type Metrics struct {
	mu        sync.RWMutex
	dirs      map[string]*dirStats // direction -> its counters
	buckets   []float64            // seconds, upper bounds
	Upstreams atomic.Int64         // open upstream connections
	Tunnels   atomic.Int64         // open tunnels (l4 mode)
	// PeerConnections, if set, counts the open HTTP/2 connections to ambient peers.
	PeerConnections func() int64
}

type dirStats struct {
	requests, errors atomic.Uint64
	counts           []atomic.Uint64 // per bucket, not cumulative; the last one is +Inf
	sumNanos         atomic.Int64
}

// NewMetrics returns empty metrics with latency buckets from 0.5 ms to 5 s.
func NewMetrics() *Metrics {
	return &Metrics{
		dirs:    map[string]*dirStats{},
		buckets: []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
	}
}

func (m *Metrics) dir(direction string) *dirStats {
	m.mu.RLock()
	d := m.dirs[direction]
	m.mu.RUnlock()
	if d != nil {
		return d
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if d = m.dirs[direction]; d == nil {
		d = &dirStats{counts: make([]atomic.Uint64, len(m.buckets)+1)}
		m.dirs[direction] = d
	}
	return d
}

// Observe records one request in a direction (outbound, inbound).
func (m *Metrics) Observe(direction string, d time.Duration, failed bool) {
	m.dir(direction).observe(m.buckets, d, failed)
}

func (st *dirStats) observe(buckets []float64, d time.Duration, failed bool) {
	st.requests.Add(1)
	if failed {
		st.errors.Add(1)
	}
	s := d.Seconds()
	i := 0
	for i < len(buckets) && s > buckets[i] {
		i++
	}
	st.counts[i].Add(1)
	st.sumNanos.Add(int64(d))
}

// Write prints the metrics in the Prometheus text exposition format.
func (m *Metrics) Write(w io.Writer, endpoints int) {
	m.mu.RLock()
	names := make([]string, 0, len(m.dirs))
	for d := range m.dirs {
		names = append(names, d)
	}
	m.mu.RUnlock()
	sort.Strings(names)
	fmt.Fprintln(w, "# TYPE meshproxy_requests_total counter")
	for _, d := range names {
		fmt.Fprintf(w, "meshproxy_requests_total{direction=%q} %d\n", d, m.dir(d).requests.Load())
	}
	fmt.Fprintln(w, "# TYPE meshproxy_errors_total counter")
	for _, d := range names {
		fmt.Fprintf(w, "meshproxy_errors_total{direction=%q} %d\n", d, m.dir(d).errors.Load())
	}
	fmt.Fprintln(w, "# TYPE meshproxy_request_duration_seconds histogram")
	for _, d := range names {
		st := m.dir(d)
		var cumulative uint64
		for i, upper := range m.buckets {
			cumulative += st.counts[i].Load()
			fmt.Fprintf(w, "meshproxy_request_duration_seconds_bucket{direction=%q,le=\"%g\"} %d\n", d, upper, cumulative)
		}
		cumulative += st.counts[len(m.buckets)].Load()
		fmt.Fprintf(w, "meshproxy_request_duration_seconds_bucket{direction=%q,le=\"+Inf\"} %d\n", d, cumulative)
		fmt.Fprintf(w, "meshproxy_request_duration_seconds_sum{direction=%q} %g\n", d, time.Duration(st.sumNanos.Load()).Seconds())
		fmt.Fprintf(w, "meshproxy_request_duration_seconds_count{direction=%q} %d\n", d, cumulative)
	}
	fmt.Fprintln(w, "# TYPE meshproxy_upstream_connections gauge")
	fmt.Fprintf(w, "meshproxy_upstream_connections %d\n", m.Upstreams.Load())
	if m.PeerConnections != nil {
		fmt.Fprintln(w, "# TYPE meshproxy_tunnels gauge")
		fmt.Fprintf(w, "meshproxy_tunnels %d\n", m.Tunnels.Load())
		fmt.Fprintln(w, "# TYPE meshproxy_peer_connections gauge")
		fmt.Fprintf(w, "meshproxy_peer_connections %d\n", m.PeerConnections())
	}
	fmt.Fprintln(w, "# TYPE meshproxy_endpoints gauge")
	fmt.Fprintf(w, "meshproxy_endpoints %d\n", endpoints)
}
