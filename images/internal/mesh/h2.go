package mesh

// HTTP/2 cleartext (prior knowledge, as gRPC speaks it) on the sidecar's and node proxy's
// HTTP/1.1 ports, for long-lived connections and streams (issue 24).
//
// The HTTP/1.1 server sees HTTP/2's connection preface as a first request line
// "PRI * HTTP/2.0" and hands the connection, with the bytes it has read, to a net/http
// server that speaks unencrypted HTTP/2 only (Go's own, since 1.24: no dependency). Its
// requests are forwarded by httputil.ReverseProxy (it keeps "TE: trailers", relays
// trailers and flushes a response of unknown length at once: a gRPC stream's messages are
// not held back) over an HTTP/2-only Transport, routed per stream as the HTTP/1.1 path
// routes per request, with this proxy's Via entry on the request and on the answer.
//
// Drain: SetKeepAlivesEnabled(false) makes net/http send GOAWAY on each HTTP/2 connection
// once its open streams are done, so a client's channel moves to the successor; Shutdown
// sends GOAWAY on every connection at once and waits for the streams still open until its
// context ends (a stream that outlives the drain is then cut when the process exits).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"patternbench.local/images/internal/h2watch"
	"patternbench.local/images/internal/serve"
)

// h2PrefaceLine is the HTTP/2 connection preface's first line, as readHead parses it.
var h2PrefaceLine = []byte("PRI * HTTP/2.0")

// handoff is a listener fed with connections made elsewhere: the connections the HTTP/1.1
// server hands over (h2.go), the CONNECT streams a waypoint serves (waypoint.go).
type handoff struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	name  string
}

func newHandoff(name string) *handoff {
	return &handoff{conns: make(chan net.Conn), done: make(chan struct{}), name: name}
}

func (l *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoff) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoff) Addr() net.Addr { return streamAddr(l.name) }

// give passes a connection on; false once the listener is closed (the server is stopping).
func (l *handoff) give(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

// prefixConn reads the bytes already taken from the socket first.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// h2Side is a Server's HTTP/2 server and the listener that feeds it. When the server starts
// to drain, that generation is shut down at once (GOAWAY on every connection, their open
// streams served on) and a new one, with keep-alives off, takes the connections that still
// come: a client must not open new streams on a proxy that is going away (its app may be
// gone already), which net/http's SetKeepAlivesEnabled(false) alone does not say until a
// connection has no stream open.
type h2Side struct {
	handler http.Handler
	idle    time.Duration
	mu      sync.Mutex
	srv     *http.Server
	ln      *handoff
	retired []*http.Server
}

func (h *h2Side) start(keepAlives bool) {
	srv := &http.Server{
		Handler: h.handler, Protocols: h2Only(), IdleTimeout: h.idle,
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: 1000},
	}
	srv.SetKeepAlivesEnabled(keepAlives)
	h.srv, h.ln = srv, newHandoff("h2c")
	go srv.Serve(h.ln) //nolint:errcheck // ends with Shutdown
}

// retire ends the current generation: GOAWAY to its connections now, their streams served
// until Shutdown's deadline; a new one, with keep-alives on or off, takes later connections.
func (h *h2Side) retire(keepAlives bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.srv
	h.retired = append(h.retired, old)
	h.start(keepAlives)
	go old.Shutdown(context.Background()) //nolint:errcheck // Server.Shutdown bounds it
}

// RelayGoAway tells every HTTP/2 client of the server to go elsewhere for new streams (a
// GOAWAY; their open streams go on), as a sidecar does when its app says GOAWAY: the app
// is going away, and a client that kept sending new streams here would meet a refused
// dial once it is gone, until the sidecar itself is stopped.
func (s *Server) RelayGoAway() {
	if s.h2 != nil {
		s.h2.retire(s.keepAlive.Load())
	}
}

// shutdown stops every generation, until ctx ends.
func (h *h2Side) shutdown(ctx context.Context) error {
	h.mu.Lock()
	all := append([]*http.Server{h.srv}, h.retired...)
	h.mu.Unlock()
	errs := make(chan error, len(all))
	for _, srv := range all {
		go func() { errs <- srv.Shutdown(ctx) }()
	}
	var err error
	for range all {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	return err
}

func (h *h2Side) give(c net.Conn) bool {
	h.mu.Lock()
	ln := h.ln
	h.mu.Unlock()
	return ln.give(c)
}

// EnableH2 makes the server take HTTP/2 cleartext connections on its listeners too,
// served by h. Call before Serve.
func (s *Server) EnableH2(h http.Handler) {
	s.h2 = &h2Side{handler: h, idle: s.IdleTimeout}
	s.h2.start(true)
}

// takeH2 hands a connection whose first line is HTTP/2's preface over to the HTTP/2
// server, with what br has read of it; false if there is no HTTP/2 server or it stops.
func (s *Server) takeH2(c net.Conn, br *bufio.Reader) bool {
	if s.h2 == nil {
		return false
	}
	buffered, _ := br.Peek(br.Buffered())
	conn := c
	if rc, ok := c.(*serve.RawConn); ok {
		// net/http sets deadlines from several goroutines: the plain TCP connection, not
		// RawConn's per-goroutine lazy deadlines; and none left from the HTTP/1.1 side.
		conn = rc.Conn
	}
	conn.SetDeadline(time.Time{})
	return s.h2.give(&prefixConn{Conn: conn, prefix: append([]byte(nil), buffered...)})
}

// h2Target is where one HTTP/2 request goes, decided before ReverseProxy runs.
type h2Target struct {
	addr      string // the upstream: a pod, or the destination node's proxy
	authority string // :authority to send
	pod       string // node mode, outbound: the pod for the destination node's proxy
}

type h2TargetKey struct{}

// ViaEntryH2 is this proxy's Via entry for an HTTP/2 hop.
func (p *Proxy) ViaEntryH2() string { return "2" + strings.TrimPrefix(p.ViaEntry(), "1.1") }

// h2Forwarder is ReverseProxy over an HTTP/2-only Transport, sending each request where
// its h2Target (in the request's context) says.
func (p *Proxy) h2Forwarder(direction string) *httputil.ReverseProxy {
	d := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	dial := d.DialContext
	if direction == "inbound" && p.Mode == Sidecar {
		// The app's connections are watched for its GOAWAY (it has started to go away).
		w := &h2watch.Watcher{Prefix: "app", Dialer: *d, OnGoAway: func(h2watch.Record) {
			if p.OnAppGoAway != nil {
				p.OnAppGoAway()
			}
		}}
		appDial := w.Dial("app", nil)
		dial = func(ctx context.Context, _, addr string) (net.Conn, error) { return appDial(ctx, addr) }
	}
	via := p.ViaEntryH2()
	return &httputil.ReverseProxy{
		Transport: &http.Transport{
			Protocols: h2Only(), DisableCompression: true, IdleConnTimeout: 90 * time.Second,
			HTTP2:       &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 10 * time.Second},
			DialContext: dial,
		},
		FlushInterval: -1,
		Rewrite: func(r *httputil.ProxyRequest) {
			t := r.In.Context().Value(h2TargetKey{}).(h2Target)
			r.Out.URL.Scheme, r.Out.URL.Host = "http", t.addr
			r.Out.Host = t.authority
			if t.pod != "" {
				r.Out.Header.Set(DestinationHeader, t.pod)
			}
			r.Out.Header["Via"] = []string{joinVia(r.In.Header.Values("Via"), via)}
		},
		ModifyResponse: func(resp *http.Response) error {
			resp.Header["Via"] = []string{joinVia(resp.Header.Values("Via"), via)}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			h2Error(w, r, http.StatusBadGateway, direction+": "+err.Error(), via)
		},
	}
}

// joinVia appends this proxy's entry to a Via trail as one field value, as the HTTP/1.1
// path writes it (a reader taking the first value gets the whole trail).
func joinVia(trail []string, entry string) string {
	return strings.Join(append(trail, entry), ", ")
}

// h2Error answers a request the proxy cannot forward: for gRPC a trailers-only answer with
// status 14 (UNAVAILABLE, what clients retry on), else the HTTP status.
func h2Error(w http.ResponseWriter, r *http.Request, status int, msg, via string) {
	h := w.Header()
	h.Add("Via", via)
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", "14")
		h.Set("Grpc-Message", "meshproxy: "+msg)
		w.WriteHeader(http.StatusOK)
		return
	}
	http.Error(w, "meshproxy: "+msg, status)
}

// observed wraps a handler with the direction's request metrics (5xx or gRPC errors of the
// proxy's own count as failed).
func (p *Proxy) observed(direction string, h http.HandlerFunc) http.Handler {
	stats := p.Metrics.dir(direction)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h(rec, r)
		stats.observe(p.Metrics.buckets, time.Since(start), rec.status >= 500 || rec.Header().Get("Grpc-Status") == "14")
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection's Flush (ReverseProxy flushes through it).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// OutboundH2 forwards an app's HTTP/2 call for http://svc[.ns] (its :authority) to a pod of
// that Service, or to the proxy on the pod's node (node mode).
func (p *Proxy) OutboundH2() http.Handler {
	forward := p.h2Forwarder("outbound")
	via := p.ViaEntryH2()
	return p.observed("outbound", func(w http.ResponseWriter, r *http.Request) {
		dest, err := p.parseHost([]byte(r.Host))
		if err != nil {
			h2Error(w, r, http.StatusBadRequest, err.Error(), via)
			return
		}
		target, podAddr, err := p.pick(dest.key)
		if err != nil {
			h2Error(w, r, http.StatusServiceUnavailable, err.Error(), via)
			return
		}
		t := h2Target{addr: target, authority: r.Host}
		if p.Mode == Node {
			t.pod = podAddr
		}
		forward.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), h2TargetKey{}, t)))
	})
}

// InboundH2 delivers an HTTP/2 call to the app (sidecar) or to the pod named in
// DestinationHeader, if it is a known endpoint (node).
func (p *Proxy) InboundH2() http.Handler {
	forward := p.h2Forwarder("inbound")
	via := p.ViaEntryH2()
	return p.observed("inbound", func(w http.ResponseWriter, r *http.Request) {
		addr := p.AppAddr
		if p.Mode == Node {
			addr = r.Header.Get(DestinationHeader)
			if !p.knownEndpoint(addr) {
				h2Error(w, r, http.StatusForbidden, errors.New(addr+" is not a known endpoint").Error(), via)
				return
			}
		}
		forward.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), h2TargetKey{}, h2Target{addr: addr, authority: r.Host})))
	})
}

// isH2Preface: the first request line of a connection is HTTP/2's preface.
func isH2Preface(line []byte) bool { return bytes.Equal(line, h2PrefaceLine) }
