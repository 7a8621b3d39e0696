package mesh

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

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
// The HTTP path is fasthttp's: the request read from the client is the request written
// upstream and the upstream's response is the one written back (no copies, pooled
// buffers, one write per message), over a keep-alive pool per upstream address. That
// keeps a hop's cost to the syscalls it needs; net/http's per-request allocations and
// goroutine hand-offs made it cost twice nginx's CPU.
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

	via   []byte
	mu    sync.RWMutex
	pools map[string]*fasthttp.HostClient // upstream address -> keep-alive pool
	dests map[string]destination          // request host -> parsed Service (bounded)
	nodes map[string]string               // node proxy IP -> its inbound address
}

// destination is a parsed request host and its Store key, kept so a host is parsed once.
type destination struct {
	Destination
	key string
}

// maxCachedHosts bounds the parsed-host cache: hosts come from clients.
const maxCachedHosts = 4096

// Init prepares the proxy; call it once before serving.
func (p *Proxy) Init() {
	if p.Metrics == nil {
		p.Metrics = NewMetrics()
	}
	if p.Timeout == 0 {
		p.Timeout = 10 * time.Second
	}
	p.via = []byte(p.ViaEntry())
	p.pools = map[string]*fasthttp.HostClient{}
	p.dests = map[string]destination{}
	p.nodes = map[string]string{}
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

// Close drops idle upstream connections.
func (p *Proxy) Close() {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, hc := range p.pools {
		hc.CloseIdleConnections()
	}
}

// pool returns the keep-alive pool to addr, creating it on first use.
func (p *Proxy) pool(addr string) *fasthttp.HostClient {
	p.mu.RLock()
	hc := p.pools[addr]
	p.mu.RUnlock()
	if hc != nil {
		return hc
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if hc = p.pools[addr]; hc != nil {
		return hc
	}
	dialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	hc = &fasthttp.HostClient{
		Addr: addr,
		Dial: func(addr string) (net.Conn, error) {
			conn, err := dialer.Dial("tcp", addr)
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
		},
		MaxConns:                 1 << 16,
		MaxIdleConnDuration:      60 * time.Second,
		ReadTimeout:              p.Timeout,
		WriteTimeout:             p.Timeout,
		NoDefaultUserAgentHeader: true,
		DisablePathNormalizing:   true,
		// Only what net/http's transport also does: a request on a kept-alive connection the
		// upstream had already closed goes again, once, on a fresh one. Anything else is a
		// retry on another endpoint, and those happen only when RETRIES asks for them.
		MaxIdemponentCallAttempts: 2,
		RetryIfErr: func(req *fasthttp.Request, attempts int, err error) (bool, bool) {
			return false, staleConnection(err) && replayable(req)
		},
	}
	p.pools[addr] = hc
	return hc
}

// staleConnection: the upstream closed a kept-alive connection before answering.
func staleConnection(err error) bool {
	return errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// replayable: idempotent and without a body, so sending it twice is harmless.
func replayable(req *fasthttp.Request) bool {
	h := &req.Header
	return (h.IsGet() || h.IsHead() || h.IsOptions()) && len(req.Body()) == 0
}

// pick chooses where an outbound request goes: the destination pod (sidecar), or the node
// proxy of the destination pod's node with the pod in DestinationHeader (node).
func (p *Proxy) pick(key string) (target, podAddr string, err error) {
	ep, podAddr, ok := p.Store.PickAddr(key)
	if !ok {
		return "", "", fmt.Errorf("no ready endpoint for service %s", key)
	}
	if p.Mode == Sidecar {
		return podAddr, podAddr, nil
	}
	if proxy, ok := p.Store.OnNode(p.NodeProxies, ep.NodeName); ok {
		return p.nodeProxyAddr(proxy.IP), podAddr, nil
	}
	return "", "", fmt.Errorf("no node proxy on node %q (for %s)", ep.NodeName, key)
}

var httpScheme = []byte("http://")

// Outbound handles forward-proxy requests from apps: GET http://svc.ns/path.
func (p *Proxy) Outbound() fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		start := time.Now()
		defer func() { p.observe("outbound", start, ctx) }()
		raw := ctx.Request.Header.RequestURI()
		if len(raw) < len(httpScheme) || !bytes.EqualFold(raw[:len(httpScheme)], httpScheme) {
			p.fail(ctx, fasthttp.StatusBadRequest, "outbound requests must use the absolute (forward-proxy) form", false)
			return
		}
		dest, err := p.parseHost(ctx.Request.URI().Host())
		if err != nil {
			p.fail(ctx, fasthttp.StatusBadRequest, err.Error(), false)
			return
		}
		target, podAddr, err := p.pick(dest.key)
		if err != nil {
			p.fail(ctx, fasthttp.StatusServiceUnavailable, err.Error(), true)
			return
		}
		req := &ctx.Request
		req.Header.Del(DestinationHeader)
		if p.Mode == Node {
			req.Header.Set(DestinationHeader, podAddr)
		}
		err = p.forward(ctx, target, false)
		for attempt := 0; err != nil && attempt < p.Retries && replayable(req); attempt++ {
			if target, podAddr, err = p.pick(dest.key); err != nil {
				break
			}
			if p.Mode == Node {
				req.Header.Set(DestinationHeader, podAddr)
			}
			err = p.forward(ctx, target, false)
		}
		if err != nil {
			p.upstreamFailed(ctx, err)
		}
	}
}

// Inbound delivers a request to the app (sidecar) or to the pod named in DestinationHeader (node).
func (p *Proxy) Inbound() fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		start := time.Now()
		defer func() { p.observe("inbound", start, ctx) }()
		addr := p.AppAddr
		if p.Mode == Node {
			addr = string(ctx.Request.Header.Peek(DestinationHeader))
			ctx.Request.Header.Del(DestinationHeader)
			if !p.knownEndpoint(addr) {
				p.fail(ctx, fasthttp.StatusForbidden, fmt.Sprintf("%q is not a known endpoint", addr), false)
				return
			}
		}
		if err := p.forward(ctx, addr, true); err != nil {
			p.upstreamFailed(ctx, err)
		}
	}
}

// forward sends the client's request to addr over its keep-alive pool and leaves the
// answer in ctx.Response, Via appended both ways and hop-by-hop headers dropped.
//
// A draining app answers "Connection: close". Inbound (passClose), that is passed on to
// whoever holds a keep-alive connection to this pod (a client through a NodePort, another
// pod's proxy): its next request then opens a new connection, which lands on a Ready pod,
// instead of arriving here after the app has gone. Outbound, the app's own connection to
// its sidecar stays open.
func (p *Proxy) forward(ctx *fasthttp.RequestCtx, addr string, passClose bool) error {
	req, resp := &ctx.Request, &ctx.Response
	clientClose := req.Header.ConnectionClose()
	req.Header.ResetConnectionClose() // the upstream connection is the pool's to keep
	if requestHasHopByHop(&req.Header) {
		clientClose = clientClose || hasCloseToken(req.Header.Peek("Connection"))
		dropHopByHop(&req.Header)
	}
	var buf [256]byte
	req.Header.SetBytesV("Via", joinVia(buf[:0], req.Header.Peek("Via"), p.via))
	req.URI() // parsed: written upstream in origin form, Host from the request's authority
	err := p.pool(addr).Do(req, resp)
	if clientClose {
		req.Header.SetConnectionClose()
	}
	if err != nil {
		return err
	}
	upstreamClose := resp.ConnectionClose()
	resp.Header.ResetConnectionClose()
	if responseHasHopByHop(&resp.Header) {
		upstreamClose = upstreamClose || hasCloseToken(resp.Header.Peek("Connection"))
		dropHopByHop(&resp.Header)
	}
	resp.Header.SetBytesV("Via", joinVia(buf[:0], resp.Header.Peek("Via"), p.via))
	if clientClose || (passClose && upstreamClose) {
		resp.SetConnectionClose()
	}
	return nil
}

func (p *Proxy) upstreamFailed(ctx *fasthttp.RequestCtx, err error) {
	status := fasthttp.StatusBadGateway
	var timeout interface{ Timeout() bool }
	if errors.Is(err, fasthttp.ErrTimeout) || (errors.As(err, &timeout) && timeout.Timeout()) {
		status = fasthttp.StatusGatewayTimeout
	}
	p.fail(ctx, status, err.Error(), true)
}

// fail answers with a one-line error of the proxy's own (Via on it when withVia).
func (p *Proxy) fail(ctx *fasthttp.RequestCtx, status int, msg string, withVia bool) {
	keepClose := ctx.Request.Header.ConnectionClose()
	ctx.Response.Reset()
	ctx.Response.SetStatusCode(status)
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	if withVia {
		ctx.Response.Header.SetBytesV("Via", p.via)
	}
	ctx.Response.SetBodyString("meshproxy: " + msg + "\n")
	if keepClose {
		ctx.Response.SetConnectionClose()
	}
}

func (p *Proxy) observe(direction string, start time.Time, ctx *fasthttp.RequestCtx) {
	p.Metrics.Observe(direction, time.Since(start), ctx.Response.StatusCode() >= 500)
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

// hopByHop are the headers that describe one connection, not the message (RFC 9110 7.6.1);
// Connection itself, Transfer-Encoding and Content-Length are fasthttp's to write.
var hopByHop = []string{"Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Upgrade"}

type header interface {
	Peek(key string) []byte
	Del(key string)
}

// isHopByHop: is this header name one dropHopByHop removes (or Connection)?
func isHopByHop(key []byte) bool {
	switch len(key) {
	case 2, 7, 10, 16, 18, 19: // the lengths of "Te" ... "Proxy-Authorization", "Connection"
		if bytes.EqualFold(key, []byte("Connection")) {
			return true
		}
		for _, name := range hopByHop {
			if len(name) == len(key) && bytes.EqualFold(key, []byte(name)) {
				return true
			}
		}
	}
	return false
}

// requestHasHopByHop and responseHasHopByHop tell in one pass over the headers whether
// dropHopByHop has work to do (usually not).
func requestHasHopByHop(h *fasthttp.RequestHeader) bool {
	found := false
	h.VisitAll(func(key, _ []byte) { found = found || isHopByHop(key) })
	return found
}

func responseHasHopByHop(h *fasthttp.ResponseHeader) bool {
	found := false
	h.VisitAll(func(key, _ []byte) { found = found || isHopByHop(key) })
	return found
}

// hasCloseToken: a Connection value that lists "close" among other tokens (fasthttp
// recognises only a bare "close").
func hasCloseToken(v []byte) bool {
	for _, token := range bytes.Split(v, []byte(",")) {
		if bytes.EqualFold(bytes.TrimSpace(token), []byte("close")) {
			return true
		}
	}
	return false
}

// dropHopByHop removes the hop-by-hop headers and any header the Connection header names.
func dropHopByHop(h header) {
	if conn := h.Peek("Connection"); len(conn) > 0 {
		for _, name := range strings.Split(string(conn), ",") {
			if name = strings.TrimSpace(name); name != "" && !strings.EqualFold(name, "close") {
				h.Del(name)
			}
		}
		h.Del("Connection")
	}
	for _, name := range hopByHop {
		if len(h.Peek(name)) > 0 {
			h.Del(name)
		}
	}
}

// joinVia appends entry to an existing Via value (RFC 9110 7.6.3: comma-separated, in
// order), into buf.
func joinVia(buf, existing, entry []byte) []byte {
	existing = bytes.TrimSpace(existing)
	if len(existing) == 0 {
		return entry
	}
	return append(append(append(buf, existing...), ", "...), entry...)
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

// JoinVia appends entry to an existing Via value.
func JoinVia(existing, entry string) string {
	existing = strings.TrimSpace(existing)
	if existing == "" {
		return entry
	}
	return existing + ", " + entry
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
