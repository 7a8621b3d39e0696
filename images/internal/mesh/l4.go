package mesh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"patternbench.local/images/internal/serve"
)

// The ambient modes (Istio's ztunnel and waypoints, without mTLS):
//
//	app ─CONNECT svc.ns:80─▶ L4(src node) ─HTTP/2 CONNECT pod─▶ L4(dst node) ─TCP─▶ pod
//	app ─CONNECT svc.ns:80─▶ L4(src node) ─HTTP/2 CONNECT svc.ns:80─▶ waypoint
//	                         waypoint ─HTTP/2 CONNECT pod─▶ L4(dst node) ─TCP─▶ pod
//
// The node L4 proxy (MODE=l4) never parses the tunnelled bytes: it reads the app's
// CONNECT line (the original destination), picks the destination (a pod of the Service,
// or one of its waypoint's pods), and carries the bytes there — to a pod on its own node
// directly, to a pod elsewhere over the one HTTP/2 connection it keeps to that node's L4,
// to a waypoint over the one it keeps to that waypoint pod. Each proxy a tunnel passes
// adds its Via-style entry to the CONNECT answer (TrailHeader), which is how the app
// learns the L4 hops it cannot see in Via.

const (
	// L4 is the node L4 proxy; Waypoint the per-Service L7 proxy of the ambient pattern.
	L4       Mode = "l4"
	Waypoint Mode = "waypoint"
)

// WaypointLabel, on a waypoint's Service (the EndpointSlice controller copies a Service's
// labels to its slices), names the Service in the same namespace whose calls the waypoint
// takes: patternbench.dev/waypoint-for=orders.
const WaypointLabel = "patternbench.dev/waypoint-for"

// drainQuiet: a draining proxy closes a tunnel once its destination side spoke last and it
// has been silent this long — an HTTP exchange inside has finished, as far as bytes tell.
// A tunnel under steady load is never that quiet: once the listeners are closed (after
// DRAIN) the silence asked for drops to a twentieth, the gap between one answer's last
// bytes and the next request; what is still open when GRACE ends is cut.
const drainQuiet = 100 * time.Millisecond

// L4Proxy is the node L4 proxy.
type L4Proxy struct {
	// Name goes into the trail: the node name (as node mode's Via).
	Name     string
	NodeName string
	Store    *Store
	// NodeProxies: Store key of the headless Service listing the L4 proxies (one per node).
	NodeProxies string
	// PeerPort: where L4 peers and waypoints take HTTP/2 CONNECT streams.
	PeerPort int
	// Timeout bounds opening a tunnel: the dial, and the peer's CONNECT answer.
	Timeout time.Duration
	// Retries: a tunnel that could not be opened is tried again on a freshly picked
	// endpoint this many times. Nothing of the app's has been sent then, so it is safe for
	// any request; without it only a peer connection that went away (GOAWAY on a peer's
	// upgrade) is tried again, once, as net/http does with a stale connection.
	Retries int
	Metrics *Metrics
	Peers   *PeerClient
	// Quiet overrides drainQuiet (tests).
	Quiet time.Duration

	entry    string
	quietNow atomic.Int64 // the silence the drain waits for now (nanoseconds)
	drainGo  sync.Once
	stop     chan struct{}
	mu       sync.Mutex
	tunnels  map[*tunnel]struct{}
	open     atomic.Int64
}

// Init prepares the proxy; call it once before serving.
func (l *L4Proxy) Init() {
	if l.Metrics == nil {
		l.Metrics = NewMetrics()
	}
	if l.Timeout == 0 {
		l.Timeout = 10 * time.Second
	}
	if l.PeerPort == 0 {
		l.PeerPort = PeerPort
	}
	if l.Peers == nil {
		l.Peers = NewPeerClient()
	}
	if l.Quiet == 0 {
		l.Quiet = drainQuiet
	}
	l.quietNow.Store(int64(l.Quiet))
	l.entry = (&Proxy{Mode: L4, Name: l.Name, NodeName: l.NodeName}).ViaEntry()
	l.tunnels = map[*tunnel]struct{}{}
	l.stop = make(chan struct{})
}

// Entry is this proxy's trail entry: "1.1 l4/<node> (<node>)".
func (l *L4Proxy) Entry() string { return l.entry }

// OpenTunnels is the number of tunnels open now.
func (l *L4Proxy) OpenTunnels() int64 { return l.open.Load() }

// Close stops the drain loop and drops idle peer connections.
func (l *L4Proxy) Close() {
	l.mu.Lock()
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.mu.Unlock()
	l.Peers.Close()
}

// route is where a tunnel goes.
type route struct {
	direct    string // a pod on this node: dial it
	peer      string // an L4 peer or a waypoint: open an HTTP/2 CONNECT stream there
	authority string // ... for this authority
	pod       string // the pod picked (for messages)
}

// route picks the destination of a call to service key, asked for as authority.
func (l *L4Proxy) route(key, authority string) (route, error) {
	if wp, ok := l.Store.WaypointOf(key); ok {
		_, addr, ok := l.Store.PickAddr(wp)
		if !ok {
			// No bypass: a Service with a waypoint is reached only through it.
			return route{}, fmt.Errorf("waypoint %s of %s has no ready endpoint", wp, key)
		}
		return route{peer: addr, authority: authority, pod: addr}, nil
	}
	ep, podAddr, ok := l.Store.PickAddr(key)
	if !ok {
		return route{}, fmt.Errorf("no ready endpoint for service %s", key)
	}
	if ep.NodeName == l.NodeName && l.NodeName != "" {
		return route{direct: podAddr, pod: podAddr}, nil
	}
	peer, ok := l.Store.OnNode(l.NodeProxies, ep.NodeName)
	if !ok {
		return route{}, fmt.Errorf("no L4 proxy on node %q (for %s)", ep.NodeName, key)
	}
	return route{peer: net.JoinHostPort(peer.IP, strconv.Itoa(l.PeerPort)), authority: podAddr, pod: podAddr}, nil
}

// openTunnel opens the upstream side of a tunnel to service key; the trail is that of the
// proxies beyond this one. Errors are *OpenError.
func (l *L4Proxy) openTunnel(key, authority string) (net.Conn, string, error) {
	freeRetry := true
	for attempt := 0; ; attempt++ {
		r, err := l.route(key, authority)
		if err != nil {
			return nil, "", &OpenError{Status: http.StatusServiceUnavailable, Msg: err.Error()}
		}
		conn, trail, err := l.dial(r)
		if err == nil {
			return conn, trail, nil
		}
		var oe *OpenError
		errors.As(err, &oe)
		switch {
		case attempt < l.Retries:
		case freeRetry && oe.Unsent:
			freeRetry = false
		default:
			return nil, "", err
		}
	}
}

func (l *L4Proxy) dial(r route) (net.Conn, string, error) {
	if r.direct != "" {
		c, err := net.DialTimeout("tcp", r.direct, min(2*time.Second, l.Timeout))
		if err != nil {
			status := http.StatusBadGateway
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				status = http.StatusGatewayTimeout
			}
			return nil, "", &OpenError{Status: status, Msg: fmt.Sprintf("pod %s: %v", r.direct, err)}
		}
		return serve.Raw(c), "", nil
	}
	s, err := l.Peers.Open(r.peer, r.authority, l.entry, l.Timeout)
	if err != nil {
		return nil, "", err
	}
	return s, s.Trail, nil
}

// Outbound is the server apps open their CONNECT tunnels on (HTTP/1.1, NODE_IP:15001).
func (l *L4Proxy) Outbound() serve.Server { return &l4Outbound{l: l} }

type l4Outbound struct {
	l         *L4Proxy
	mu        sync.Mutex
	listeners []net.Listener
	closing   atomic.Bool
	handshake sync.WaitGroup
}

func (s *l4Outbound) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.handshake.Add(1)
		go s.l.serveApp(serve.Raw(c), &s.handshake)
	}
}

// SetKeepAlivesEnabled(false) starts the drain: tunnels close as they fall quiet, and the
// apps open their next ones on the successor.
func (s *l4Outbound) SetKeepAlivesEnabled(on bool) {
	if !on {
		s.l.Drain()
	}
}

// Shutdown stops accepting, then waits for the tunnels to close (quiet ones are closed by
// the drain) until ctx ends, when the rest are cut.
func (s *l4Outbound) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	s.l.Drain()
	handshakes := make(chan struct{})
	go func() { s.handshake.Wait(); close(handshakes) }()
	select {
	case <-handshakes:
	case <-ctx.Done():
	}
	return s.l.waitTunnels(ctx)
}

// serveApp reads an app's CONNECT, opens the tunnel and carries bytes until either side ends.
func (l *L4Proxy) serveApp(c net.Conn, handshake *sync.WaitGroup) {
	stats := l.Metrics.dir("tunnel")
	start := time.Now()
	br := getReader(c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var h head
	err := readHead(br, &h)
	fail := func(status int, trail, msg string) {
		stats.observe(l.Metrics.buckets, time.Since(start), status >= 500)
		putReader(br)
		writeConnectError(c, status, trail, msg)
		c.Close()
		handshake.Done()
	}
	if err != nil {
		if errors.Is(err, errHeadTooLarge) {
			fail(http.StatusRequestHeaderFieldsTooLarge, "", err.Error())
		} else {
			fail(http.StatusBadRequest, "", "reading the CONNECT request: "+err.Error())
		}
		return
	}
	method, authority, ok := splitRequestLine(h.line)
	if !ok || method != http.MethodConnect {
		fail(http.StatusMethodNotAllowed, l.entry, "the node L4 proxy takes CONNECT svc.ns:port tunnels only")
		return
	}
	dest, err := ParseHost(authority, "")
	if err != nil {
		fail(http.StatusBadRequest, l.entry, err.Error())
		return
	}
	c.SetReadDeadline(time.Time{})
	up, trail, err := l.openTunnel(dest.Key(), authority)
	if err != nil {
		var oe *OpenError
		errors.As(err, &oe)
		fail(oe.Status, joinTrail(oe.Trail, l.entry), oe.Msg)
		return
	}
	stats.observe(l.Metrics.buckets, time.Since(start), false)
	// What the app sent after its CONNECT, before the answer, goes first.
	br.Discard(h.size)
	early := []byte(nil)
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		early = append(early, b...)
	}
	putReader(br)
	w := getWriter(c)
	w.WriteString("HTTP/1.1 200 OK\r\n" + TrailHeader + ": ")
	w.WriteString(joinTrail(trail, l.entry))
	w.WriteString("\r\n\r\n")
	err = w.Flush()
	putWriter(w)
	if err == nil && len(early) > 0 {
		_, err = up.Write(early)
	}
	t := &tunnel{client: c, server: up}
	// Track before the handshake counts as done, so Shutdown's wait sees this tunnel.
	l.track(t)
	handshake.Done()
	if err != nil {
		t.close()
		l.untrack(t)
		return
	}
	l.splice(t)
}

// splitRequestLine splits "METHOD target HTTP/1.x".
func splitRequestLine(line []byte) (method, target string, ok bool) {
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1+1 || !bytes.HasPrefix(line[sp2+1:], []byte("HTTP/1.")) {
		return "", "", false
	}
	return string(line[:sp1]), string(line[sp1+1 : sp2]), true
}

// writeConnectError answers a CONNECT that cannot be served, and the connection ends.
func writeConnectError(c net.Conn, status int, trail, msg string) {
	body := "meshproxy: " + msg + "\n"
	var b strings.Builder
	b.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	if trail != "" {
		b.WriteString(TrailHeader + ": " + trail + "\r\n")
	}
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n")
	b.WriteString(body)
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, b.String())
}

// PeerHandler takes HTTP/2 CONNECT streams from L4 peers and waypoints: the authority is
// a pod of this node, which must be a known endpoint (no open relay).
func (l *L4Proxy) PeerHandler() http.Handler {
	stats := l.Metrics.dir("peer")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if r.Method != http.MethodConnect {
			answerConnect(w, http.StatusMethodNotAllowed, l.entry, "peers open CONNECT streams only")
			return
		}
		if hasEntry(r.Header.Get("Via"), l.entry) {
			answerConnect(w, http.StatusLoopDetected, l.entry, "this stream already passed "+l.entry)
			return
		}
		host, port, err := net.SplitHostPort(r.Host)
		if err != nil || !l.Store.HasEndpointOn(host, port, l.NodeName) {
			stats.observe(l.Metrics.buckets, time.Since(start), false)
			answerConnect(w, http.StatusForbidden, l.entry, fmt.Sprintf("%q is not a known endpoint on node %q", r.Host, l.NodeName))
			return
		}
		pod, err := net.DialTimeout("tcp", r.Host, min(2*time.Second, l.Timeout))
		if err != nil {
			stats.observe(l.Metrics.buckets, time.Since(start), true)
			answerConnect(w, http.StatusBadGateway, l.entry, fmt.Sprintf("pod %s: %v", r.Host, err))
			return
		}
		stats.observe(l.Metrics.buckets, time.Since(start), false)
		answerConnect(w, http.StatusOK, l.entry, "")
		s := newServerStream(w, r)
		t := &tunnel{client: s, server: serve.Raw(pod)}
		stop := context.AfterFunc(r.Context(), t.close)
		defer stop()
		l.track(t)
		l.splice(t)
	})
}

// PeerServer serves PeerHandler over HTTP/2. It goes first on shutdown: it closes its
// listener and sends GOAWAY, so peers open their next streams to the successor, then waits
// for the streams open here to close (the drain ends them between answers).
func (l *L4Proxy) PeerServer() serve.Server {
	return &l4PeerServer{Server: NewPeerServer(l.PeerHandler()), l: l}
}

type l4PeerServer struct {
	*http.Server
	l *L4Proxy
}

// SetKeepAlivesEnabled(false) starts the drain (http.Server's does nothing for HTTP/2).
func (s *l4PeerServer) SetKeepAlivesEnabled(on bool) {
	if !on {
		s.l.Drain()
	}
}

func (s *l4PeerServer) Shutdown(ctx context.Context) error {
	s.l.quietNow.Store(int64(s.l.Quiet / 20))
	s.l.Drain()
	err := s.Server.Shutdown(ctx)
	if err != nil {
		s.l.cut()
		s.Server.Close()
	}
	return err
}

// hasEntry: is entry one of the trail's entries?
func hasEntry(trail, entry string) bool {
	for _, e := range strings.Split(trail, ",") {
		if strings.TrimSpace(e) == entry {
			return true
		}
	}
	return false
}

// tunnel is one tunnelled connection: the client side (an app's connection, or a peer's
// stream) and the server side (a pod, or a stream to a peer or waypoint).
type tunnel struct {
	client, server net.Conn
	last           atomic.Int64 // unix nanoseconds of the last bytes either way
	serverLast     atomic.Bool  // the server side spoke last: no request is waiting for its answer
	once           sync.Once
}

func (t *tunnel) note(fromServer bool) {
	t.last.Store(time.Now().UnixNano())
	if t.serverLast.Load() != fromServer {
		t.serverLast.Store(fromServer)
	}
}

func (t *tunnel) close() {
	t.once.Do(func() {
		t.client.Close()
		t.server.Close()
	})
}

// quiet: the server answered last and nothing moved for d.
func (t *tunnel) quiet(now time.Time, d time.Duration) bool {
	return t.serverLast.Load() && now.UnixNano()-t.last.Load() >= int64(d)
}

func (l *L4Proxy) track(t *tunnel) {
	l.mu.Lock()
	l.tunnels[t] = struct{}{}
	l.mu.Unlock()
	l.open.Add(1)
	l.Metrics.Tunnels.Add(1)
}

func (l *L4Proxy) untrack(t *tunnel) {
	l.mu.Lock()
	delete(l.tunnels, t)
	l.mu.Unlock()
	l.open.Add(-1)
	l.Metrics.Tunnels.Add(-1)
}

// Drain starts closing tunnels as they fall quiet. The L4 proxy cannot say
// "Connection: close" inside a tunnel; closing one between exchanges is the next best: the
// app's HTTP client opens its next connection, which lands on the successor. A request sent
// in the instant the tunnel closes meets a closed kept-alive connection, which net/http
// sends again (idempotent requests) as it does whenever a server closes an idle connection.
func (l *L4Proxy) Drain() {
	l.drainGo.Do(func() {
		go func() {
			tick := time.NewTicker(max(l.Quiet/20, time.Millisecond))
			defer tick.Stop()
			for {
				select {
				case <-l.stop:
					return
				case now := <-tick.C:
					l.mu.Lock()
					var quiet []*tunnel
					d := time.Duration(l.quietNow.Load())
					for t := range l.tunnels {
						if t.quiet(now, d) {
							quiet = append(quiet, t)
						}
					}
					l.mu.Unlock()
					for _, t := range quiet {
						t.close()
					}
				}
			}
		}()
	})
}

// waitTunnels closes tunnels at the first short silence after an answer and waits until
// none is open, or ctx ends: then the rest are cut.
func (l *L4Proxy) waitTunnels(ctx context.Context) error {
	l.quietNow.Store(int64(l.Quiet / 20))
	l.Drain()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for l.open.Load() > 0 {
		select {
		case <-ctx.Done():
			l.cut()
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// cut closes every tunnel still open.
func (l *L4Proxy) cut() {
	l.mu.Lock()
	var all []*tunnel
	for t := range l.tunnels {
		all = append(all, t)
	}
	l.mu.Unlock()
	for _, t := range all {
		t.close()
	}
}

// splice carries bytes both ways until the tunnel ends. A side that ends cleanly is
// half-closed on the other (so "until close" answers work); an error ends both.
func (l *L4Proxy) splice(t *tunnel) {
	defer l.untrack(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := l.pump(t.server, t.client, t, false); err != nil {
			t.close()
		} else {
			closeWrite(t.server)
		}
	}()
	if err := l.pump(t.client, t.server, t, true); err != nil {
		t.close()
	} else {
		closeWrite(t.client)
	}
	if _, ok := t.client.(*ServerStream); ok {
		// The peer's request side ends only when the handler returns: do not wait for it.
		t.close()
		return
	}
	<-done
	t.close()
}

// lendAbove: with more tunnels open than this, a direction waiting for bytes holds no buffer.
const lendAbove = 64

var tunnelBuffers = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// pump copies src to dst until src ends (nil) or either fails.
func (l *L4Proxy) pump(dst, src net.Conn, t *tunnel, fromServer bool) error {
	waiter, _ := src.(interface{ WaitReadable() error })
	var buf *[]byte
	defer func() {
		if buf != nil {
			tunnelBuffers.Put(buf)
		}
	}()
	for {
		if buf == nil {
			if waiter != nil && l.open.Load() > lendAbove {
				if err := waiter.WaitReadable(); err != nil {
					return err
				}
			}
			buf = tunnelBuffers.Get().(*[]byte)
		}
		n, err := src.Read(*buf)
		if n > 0 {
			t.note(fromServer)
			if _, werr := dst.Write((*buf)[:n]); werr != nil {
				return werr
			}
			t.note(fromServer)
		}
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if waiter != nil && l.open.Load() > lendAbove {
			tunnelBuffers.Put(buf)
			buf = nil
		}
	}
}

// closeWrite half-closes c: a TCP connection's write side, a client stream's request side;
// a server stream can only end whole.
func closeWrite(c net.Conn) {
	if rc, ok := c.(*serve.RawConn); ok {
		c = rc.Conn
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
