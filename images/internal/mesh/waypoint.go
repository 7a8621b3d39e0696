package mesh

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// The waypoint (MODE=waypoint) is the L7 proxy of one Service, a Deployment of its own:
// it takes the tunnels the node L4 proxies open to it (HTTP/2 CONNECT streams, each
// carrying an app's HTTP/1.1 connection) and plain HTTP, and serves them with the same
// HTTP path as the sidecar and node modes: Via, per-request balancing over the Service's
// pods, RETRIES. Each request goes on to its pod straight through the pod's node L4 proxy
// (an HTTP/2 CONNECT stream to that L4, authority the pod), as Istio's waypoint speaks
// HBONE straight to the destination's ztunnel: the waypoint's own node's L4 is not on the
// path. Those streams are the keep-alive connections of its upstream pools.

// Waypoint serves the requests that arrive in tunnels (origin form, Host as the app sent
// it) or as plain HTTP (origin or absolute form): all go to the waypoint's Service.
func (p *Proxy) Waypoint() Handler {
	stats := p.Metrics.dir("waypoint")
	return func(x *exchange) {
		start := time.Now()
		defer func() { stats.observe(p.Metrics.buckets, time.Since(start), x.status >= 500) }()
		out := outgoing{path: x.target}
		if authority, path, ok := splitAbsolute(x.target); ok {
			out.authority, out.path = authority, path
		} else if len(x.target) == 0 || x.target[0] != '/' {
			writeError(x, http.StatusBadRequest, "requests must use the origin or the absolute form", nil)
			return
		}
		p.forward(x, p.Service, out)
	}
}

// dialThroughL4 opens a tunnel to a pod of the waypoint's Service through the L4 proxy of
// the pod's node; its trail (that L4) goes on the answers of the requests it carries.
func (p *Proxy) dialThroughL4(podAddr string) (net.Conn, error) {
	host, portText, err := net.SplitHostPort(podAddr)
	if err != nil {
		return nil, err
	}
	port, _ := strconv.Atoi(portText)
	ep, ok := p.Store.Find(p.Service, host, port)
	if !ok {
		return nil, fmt.Errorf("%s is no longer an endpoint of %s", podAddr, p.Service)
	}
	l4, ok := p.Store.OnNode(p.NodeProxies, ep.NodeName)
	if !ok {
		return nil, fmt.Errorf("no L4 proxy on node %q (for %s)", ep.NodeName, podAddr)
	}
	peer := net.JoinHostPort(l4.IP, strconv.Itoa(p.PeerPort))
	s, err := p.Peers.Open(peer, podAddr, string(p.via), p.Timeout)
	var oe *OpenError
	if errors.As(err, &oe) && oe.Unsent {
		// The L4 proxy's connection went away before it took the stream (it hands over on
		// upgrade and sends GOAWAY): nothing was done, so open it again, on a new connection
		// to the successor, as the L4 proxies themselves do (seen on the cluster: one 502
		// per L4 upgrade without this).
		s, err = p.Peers.Open(peer, podAddr, string(p.via), p.Timeout)
	}
	if err != nil {
		return nil, err
	}
	p.Metrics.Upstreams.Add(1)
	s.OnClose = func() { p.Metrics.Upstreams.Add(-1) }
	return s, nil
}

// WaypointTunnels returns the HTTP/2 handler L4 proxies open their CONNECT streams on, and
// the listener that hands each stream, as a connection, to the HTTP server that serves it
// (NewServer(p.Waypoint())). A stream for another Service is refused (403): the L4 proxy
// sent it to the wrong waypoint.
func (p *Proxy) WaypointTunnels() (http.Handler, net.Listener) {
	ln := newHandoff("waypoint-tunnels")
	stats := p.Metrics.dir("peer")
	entry := string(p.via)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if r.Method != http.MethodConnect {
			answerConnect(w, http.StatusMethodNotAllowed, entry, "peers open CONNECT streams only")
			return
		}
		if hasEntry(r.Header.Get("Via"), entry) {
			answerConnect(w, http.StatusLoopDetected, entry, "this stream already passed "+entry)
			return
		}
		dest, err := ParseHost(r.Host, p.DefaultNamespace)
		if err != nil || dest.Key() != p.Service {
			stats.observe(p.Metrics.buckets, time.Since(start), false)
			answerConnect(w, http.StatusForbidden, entry, fmt.Sprintf("this is the waypoint of %s, not of %q", p.Service, r.Host))
			return
		}
		stats.observe(p.Metrics.buckets, time.Since(start), false)
		answerConnect(w, http.StatusOK, entry, "")
		s := newServerStream(w, r)
		defer s.Close()
		select {
		case ln.conns <- s:
		case <-ln.done:
			return // shutting down: the stream ends; its app sees the connection closed
		case <-r.Context().Done():
			return
		}
		select {
		case <-s.Done(): // the HTTP server finished with it
		case <-r.Context().Done(): // the L4 proxy reset the stream or lost its connection
		}
	})
	return h, ln
}
