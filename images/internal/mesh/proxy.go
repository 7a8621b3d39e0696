package mesh

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"patternbench.local/images/internal/serve"
)

// Mode is where the proxy runs: in the pod (sidecar) or once per node (node).
type Mode string

const (
	Sidecar Mode = "sidecar"
	Node    Mode = "node"
)

// DestinationHeader tells a node proxy's inbound side which pod to deliver to.
const DestinationHeader = "X-Mesh-Destination"

// Proxy routes outbound calls to Services and delivers inbound calls to pods.
//
// Its HTTP/1.1 path is its own (h1.go, server.go, pool.go): the request head is parsed in
// place for the headers that matter, rewritten into the upstream connection's buffer and
// sent with its body in one write; the answer comes back the same way; keep-alive pools per
// upstream address. Profiling showed why: at 1000 req/s on a shared core, what a request
// costs is mostly the kernel's loopback TCP and the context switches, the same for every
// proxy, plus the proxy's own code run cold after the app has had the core; net/http (twice
// nginx's CPU) and then fasthttp (+15-25 %) lost on that last part, a bare copy loop beat
// nginx. The deadlines and the syscalls are serve.RawConn's.
type Proxy struct {
	Mode Mode
	// Name goes into Via: the pod name (sidecar) or the node name (node).
	Name string
	// NodeName, when known, goes into Via as a comment, so every hop of a trail says which
	// node it ran on and hops can be classified from where they really ran.
	NodeName string
	// DefaultNamespace resolves bare Service names (sidecar: the pod's namespace).
	DefaultNamespace string
	Store            *Store
	// AppAddr: where a sidecar's inbound side delivers (the app on localhost).
	AppAddr string
	// NodeProxies: Store key of the headless Service listing node proxies (node mode),
	// so a node proxy finds the proxy on the destination pod's node.
	NodeProxies string
	InboundPort int
	Timeout     time.Duration
	Retries     int
	Metrics     *Metrics
	// Waypoint mode: Service is the Store key of the Service it takes calls for; requests
	// go to its pods through their nodes' L4 proxies, as HTTP/2 CONNECT streams on Peers
	// to PeerPort.
	Service  string
	Peers    *PeerClient
	PeerPort int
	// OnAppGoAway (sidecar): called when the app says GOAWAY on an HTTP/2 connection of the
	// inbound side; meshproxy relays it to the inbound's own clients (Server.RelayGoAway).
	OnAppGoAway func()

	via   []byte
	mu    sync.RWMutex
	pools map[string]*pool       // upstream address -> keep-alive pool
	dests map[string]destination // request host -> parsed Service (bounded)
	nodes map[string]string      // node proxy IP -> its inbound address
	stop  chan struct{}
}

// destination is a parsed request host and its Store key, kept so a host is parsed once.
type destination struct {
	Destination
	key string
}

// maxCachedHosts bounds the parsed-host cache: hosts come from clients.
const maxCachedHosts = 4096

// upstreamIdle: how long an unused upstream connection is kept.
const upstreamIdle = 60 * time.Second

// Init prepares the proxy; call it once before serving.
func (p *Proxy) Init() {
	if p.Metrics == nil {
		p.Metrics = NewMetrics()
	}
	if p.Timeout == 0 {
		p.Timeout = 10 * time.Second
	}
	if p.Mode == Waypoint {
		if p.Peers == nil {
			p.Peers = NewPeerClient()
		}
		if p.PeerPort == 0 {
			p.PeerPort = PeerPort
		}
	}
	p.via = []byte(p.ViaEntry())
	p.pools = map[string]*pool{}
	p.dests = map[string]destination{}
	p.nodes = map[string]string{}
	p.stop = make(chan struct{})
	go p.sweep()
}

// sweep closes upstream connections left idle too long.
func (p *Proxy) sweep() {
	t := time.NewTicker(upstreamIdle / 4)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.RLock()
			for _, pl := range p.pools {
				pl.closeIdle(upstreamIdle)
			}
			p.mu.RUnlock()
		}
	}
}

// Close drops idle upstream connections.
func (p *Proxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	for _, pl := range p.pools {
		pl.closeIdle(0)
	}
	if p.Peers != nil {
		p.Peers.Close()
	}
}

// pool returns the keep-alive pool to addr, creating it on first use.
func (p *Proxy) pool(addr string) *pool {
	p.mu.RLock()
	pl := p.pools[addr]
	p.mu.RUnlock()
	if pl != nil {
		return pl
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if pl = p.pools[addr]; pl == nil {
		pl = &pool{addr: addr, dial: p.dial}
		p.pools[addr] = pl
	}
	return pl
}

func (p *Proxy) dial(addr string) (net.Conn, error) {
	if p.Mode == Waypoint {
		return p.dialThroughL4(addr)
	}
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	p.Metrics.Upstreams.Add(1)
	raw := serve.Raw(conn)
	if rc, ok := raw.(*serve.RawConn); ok {
		rc.OnClose = func() { p.Metrics.Upstreams.Add(-1) }
		return rc, nil
	}
	return &countedConn{Conn: raw, gauge: &p.Metrics.Upstreams}, nil
}

// parseHost is ParseHost, remembered per host.
func (p *Proxy) parseHost(host []byte) (destination, error) {
	p.mu.RLock()
	d, ok := p.dests[string(host)]
	p.mu.RUnlock()
	if ok {
		return d, nil
	}
	parsed, err := ParseHost(string(host), p.DefaultNamespace)
	if err != nil {
		return destination{}, err
	}
	d = destination{parsed, parsed.Key()}
	p.mu.Lock()
	if len(p.dests) < maxCachedHosts {
		p.dests[string(host)] = d
	}
	p.mu.Unlock()
	return d, nil
}

// nodeProxyAddr is a node proxy's inbound address.
func (p *Proxy) nodeProxyAddr(ip string) string {
	p.mu.RLock()
	addr, ok := p.nodes[ip]
	p.mu.RUnlock()
	if ok {
		return addr
	}
	addr = net.JoinHostPort(ip, strconv.Itoa(p.InboundPort))
	p.mu.Lock()
	if len(p.nodes) < maxCachedHosts {
		p.nodes[ip] = addr
	}
	p.mu.Unlock()
	return addr
}

// pick chooses where an outbound request goes: the destination pod (sidecar), or the node
// proxy of the destination pod's node with the pod in DestinationHeader (node).
func (p *Proxy) pick(key string) (target, podAddr string, err error) {
	ep, podAddr, ok := p.Store.PickAddr(key)
	if !ok {
		return "", "", fmt.Errorf("no ready endpoint for service %s", key)
	}
	if p.Mode == Sidecar || p.Mode == Waypoint { // a waypoint's pool dials through the pod's L4
		return podAddr, podAddr, nil
	}
	if proxy, ok := p.Store.OnNode(p.NodeProxies, ep.NodeName); ok {
		return p.nodeProxyAddr(proxy.IP), podAddr, nil
	}
	return "", "", fmt.Errorf("no node proxy on node %q (for %s)", ep.NodeName, key)
}

// outgoing is how the request head is rewritten for the upstream.
type outgoing struct {
	authority []byte // outbound: the Host to send (from the absolute URI); nil: keep Host
	path      []byte // the request target to send
	podAddr   string // node mode, outbound: the pod for the destination node's proxy
}

// splitAbsolute splits "http://authority/path?query" (any case of the scheme).
func splitAbsolute(target []byte) (authority, path []byte, ok bool) {
	const scheme = "http://"
	if len(target) < len(scheme) || !bytes.EqualFold(target[:len(scheme)], []byte(scheme)) {
		return nil, nil, false
	}
	rest := target[len(scheme):]
	i := 0
	for i < len(rest) && rest[i] != '/' && rest[i] != '?' {
		i++
	}
	if i == len(rest) {
		return rest, []byte("/"), len(rest) > 0
	}
	authority, path = rest[:i], rest[i:]
	if path[0] == '?' {
		return authority, nil, false // "http://host?q": keep it simple, refuse
	}
	return authority, path, len(authority) > 0
}

// Outbound handles forward-proxy requests from apps: GET http://svc.ns/path.
func (p *Proxy) Outbound() Handler {
	stats := p.Metrics.dir("outbound")
	return func(x *exchange) {
		start := time.Now()
		defer func() { stats.observe(p.Metrics.buckets, time.Since(start), x.status >= 500) }()
		authority, path, ok := splitAbsolute(x.target)
		if !ok {
			writeError(x, http.StatusBadRequest, "outbound requests must use the absolute (forward-proxy) form", nil)
			return
		}
		dest, err := p.parseHost(authority)
		if err != nil {
			writeError(x, http.StatusBadRequest, err.Error(), nil)
			return
		}
		p.forward(x, dest.key, outgoing{authority: authority, path: path})
	}
}

// forward sends a request to a pod of service key (through the pod's node proxy in node
// mode, its L4 proxy in waypoint mode) and relays the answer; with RETRIES, a failed
// replayable request goes again to a freshly picked pod.
func (p *Proxy) forward(x *exchange, key string, out outgoing) {
	target, podAddr, err := p.pick(key)
	if err != nil {
		writeError(x, http.StatusServiceUnavailable, err.Error(), p.via)
		return
	}
	if p.Mode == Node {
		out.podAddr = podAddr
	}
	err = p.roundTrip(x, target, out, false)
	for attempt := 0; err != nil && attempt < p.Retries && x.replayable(); attempt++ {
		if target, podAddr, err = p.pick(key); err != nil {
			break
		}
		if p.Mode == Node {
			out.podAddr = podAddr
		}
		err = p.roundTrip(x, target, out, false)
	}
	if err != nil {
		p.upstreamFailed(x, err)
	}
}

// Inbound delivers a request to the app (sidecar) or to the pod named in DestinationHeader (node).
func (p *Proxy) Inbound() Handler {
	stats := p.Metrics.dir("inbound")
	return func(x *exchange) {
		start := time.Now()
		defer func() { stats.observe(p.Metrics.buckets, time.Since(start), x.status >= 500) }()
		addr := p.AppAddr
		if p.Mode == Node {
			addr = string(x.req.get(DestinationHeader))
			if !p.knownEndpoint(addr) {
				writeError(x, http.StatusForbidden, fmt.Sprintf("%q is not a known endpoint", addr), nil)
				return
			}
		}
		if err := p.roundTrip(x, addr, outgoing{path: x.target}, true); err != nil {
			p.upstreamFailed(x, err)
		}
	}
}

// errAnswered: the exchange failed after the answer had begun; nothing more can be said.
var errAnswered = errors.New("failed after the answer began")

// roundTrip sends the request to addr over its pool and relays the answer to the client.
// An error means nothing was written to the client yet (the caller answers it), except
// errAnswered.
//
// A draining app answers "Connection: close". Inbound (passClose), that is passed on to
// whoever holds a keep-alive connection to this pod (a client through a NodePort, another
// pod's proxy): its next request then opens a new connection, which lands on a Ready pod,
// instead of arriving here after the app has gone. Outbound, the app's own connection to
// its sidecar stays open.
func (p *Proxy) roundTrip(x *exchange, addr string, out outgoing, passClose bool) error {
	pl := p.pool(addr)
	u, err := pl.get()
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		err = p.send(x, u, out)
		if err == nil {
			// TIMEOUT bounds the wait for the answer's head, as net/http's
			// ResponseHeaderTimeout did; a body then takes as long as it takes.
			u.conn.SetReadDeadline(time.Now().Add(p.Timeout))
			if err = u.ready(x.lend); err == nil {
				err = readHead(u.br, &x.resp)
			}
		}
		if err == nil {
			u.conn.SetReadDeadline(time.Time{})
			break
		}
		u.close()
		// Only what net/http's transport also does: a request on a kept-alive connection
		// the upstream had already closed goes again, once, on a fresh one. Anything else
		// is a retry on another endpoint, and those happen only when RETRIES asks.
		if attempt > 0 || !u.reused || !x.replayable() || !staleConnection(err) {
			return err
		}
		if u, err = pl.fresh(); err != nil {
			return err
		}
	}
	for { // interim answers (1xx) go to the client as they come, then the final one
		code, ok := statusCode(x.resp.line)
		if !ok {
			u.close()
			return fmt.Errorf("%w: status line %q", errMalformed, x.resp.line)
		}
		x.resp.finish(bytes.HasPrefix(x.resp.line, []byte("HTTP/1.0")))
		if code/100 != 1 || code == http.StatusSwitchingProtocols {
			return p.relay(x, u, pl, code, passClose)
		}
		w := x.out()
		w.Write(x.resp.line)
		w.WriteString("\r\n")
		x.resp.writeFields(w)
		w.WriteString("\r\n")
		u.br.Discard(x.resp.size)
		if err := readHead(u.br, &x.resp); err != nil {
			u.close()
			x.close = true
			return errAnswered
		}
	}
}

// send writes the request head, rewritten, and its body to the upstream.
func (p *Proxy) send(x *exchange, u *upstreamConn, out outgoing) error {
	w := getWriter(u.conn)
	defer putWriter(w)
	w.Write(x.method)
	w.WriteString(" ")
	w.Write(out.path)
	w.WriteString(" HTTP/1.1\r\n")
	skip := [...]string{"Via", DestinationHeader, "Expect", "Host"}
	drop := skip[:3]
	if out.authority != nil {
		w.WriteString("Host: ")
		w.Write(out.authority)
		w.WriteString("\r\n")
		drop = skip[:]
	}
	x.req.writeFields(w, drop...)
	writeVia(w, x.req.via, p.via)
	if out.podAddr != "" {
		w.WriteString(DestinationHeader + ": ")
		w.WriteString(out.podAddr)
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
	if x.req.chunked || x.req.contentLength > 0 {
		x.consumeHead()
		if err := copyBody(w, x.br, &x.req, false); err != nil {
			x.close = true // the client's body is half read: its connection cannot go on
			return err
		}
	}
	return w.Flush()
}

// relay writes the upstream's final answer to the client and returns the upstream
// connection to its pool if it can serve again.
func (p *Proxy) relay(x *exchange, u *upstreamConn, pl *pool, code int, passClose bool) error {
	resp := &x.resp
	untilClose := !bodyless(x.method, code) && !resp.chunked && resp.contentLength < 0
	if (passClose && resp.close) || untilClose {
		x.close = true
	}
	w := x.out()
	w.WriteString("HTTP/1.1")
	w.Write(resp.line[8:])
	w.WriteString("\r\n")
	if p.Mode == Waypoint {
		// The tunnel of this request's upstream leg (the destination's L4), which the app
		// cannot see otherwise: on the answer, as the L7 proxy can touch headers.
		resp.writeFields(w, "Via", TrailHeader)
		if u.trail != "" {
			w.WriteString(TrailHeader + ": ")
			w.WriteString(u.trail)
			w.WriteString("\r\n")
		}
	} else {
		resp.writeFields(w, "Via")
	}
	writeVia(w, resp.via, p.via)
	if x.close {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
	x.status = code
	u.br.Discard(resp.size)
	if !bodyless(x.method, code) {
		if err := copyBody(w, u.br, resp, untilClose); err != nil {
			u.close()
			x.close = true
			return nil // the client sees a cut answer and a closed connection
		}
	}
	if resp.close || untilClose || code == http.StatusSwitchingProtocols {
		u.close()
	} else {
		pl.put(u)
	}
	return nil
}

// staleConnection: the upstream closed a kept-alive connection before answering.
func staleConnection(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (p *Proxy) upstreamFailed(x *exchange, err error) {
	if errors.Is(err, errAnswered) {
		return
	}
	status := http.StatusBadGateway
	var timeout interface{ Timeout() bool }
	if errors.As(err, &timeout) && timeout.Timeout() {
		status = http.StatusGatewayTimeout
	}
	writeError(x, status, err.Error(), p.via)
}

// knownEndpoint: a node proxy delivers only to pods it knows from EndpointSlices, so it is
// not an open relay.
func (p *Proxy) knownEndpoint(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	return p.Store.HasEndpoint(host, port)
}

// ViaEntry is this proxy's entry in a Via trail: "1.1 <mode>/<name> (<node>)" (RFC 9110
// allows a comment after received-by; the node goes there).
func (p *Proxy) ViaEntry() string {
	entry := "1.1 " + string(p.Mode) + "/" + p.Name
	if p.NodeName != "" {
		entry += " (" + p.NodeName + ")"
	}
	return entry
}

// countedConn decrements the open-connection gauge once, when closed (for a connection
// that is not a serve.RawConn).
type countedConn struct {
	net.Conn
	gauge *atomic.Int64
	once  sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.gauge.Add(-1) })
	return c.Conn.Close()
}
