package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The tunnel between ambient proxies (node L4 proxies and waypoints) is Istio's HBONE
// without the mTLS: one long-lived HTTP/2 connection per peer (cleartext, prior
// knowledge), one CONNECT stream per tunnelled TCP connection. The standard library has
// spoken unencrypted HTTP/2 since Go 1.24 (http.Protocols), so no dependency is added.
//
//	:method CONNECT
//	:authority 10.244.2.7:8080        (to a node L4 peer: the destination pod)
//	:authority orders.demo:80         (to a waypoint: the Service the app asked for)
//	via: 1.1 l4/n1 (n1)               (the trail so far: refuses loops, names the sender)
//
//	:status 200
//	x-tunnel-trail: 1.1 l4/n2 (n2)    (every proxy beyond the sender, callee side first)
//
// then the stream's DATA frames carry the tunnelled bytes, untouched, both ways.

// TrailHeader carries the proxies a tunnel passed, on CONNECT answers (HTTP/1.1 from the
// source L4 to the app, HTTP/2 between peers) and on HTTP answers from a waypoint (the
// tunnel of its upstream leg). Entries are Via entries ("1.1 <mode>/<name> (<node>)") and
// are appended on the way back, so the list reads callee side first, as a response's Via.
const TrailHeader = "X-Tunnel-Trail"

// PeerPort is where node L4 proxies and waypoints take HTTP/2 CONNECT streams (Istio's
// HBONE port).
const PeerPort = 15008

// h2Only: HTTP/2 with prior knowledge, nothing else.
func h2Only() *http.Protocols {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &p
}

// joinTrail joins trails, skipping empty ones.
func joinTrail(parts ...string) string {
	out := ""
	for _, p := range parts {
		if p == "" {
			continue
		}
		if out != "" {
			out += ", "
		}
		out += p
	}
	return out
}

// PeerClient opens CONNECT streams to peers, over one HTTP/2 connection per peer address.
type PeerClient struct {
	tr *http.Transport
	// Dials counts the TCP connections ever opened to peers; Conns is those open now.
	Dials, Conns atomic.Int64
}

// NewPeerClient returns a client whose connections are checked by a ping after 30 s of
// silence (a peer node that vanished is noticed).
func NewPeerClient() *PeerClient {
	c := &PeerClient{}
	d := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	c.tr = &http.Transport{
		Protocols: h2Only(),
		// One connection per peer: the first streams to a new peer wait for its one dial
		// instead of each dialling its own (for HTTP/2, MaxConnsPerHost bounds dials in
		// progress). A second connection opens only once the first has as many streams as
		// the peer allows (4096).
		MaxConnsPerHost:    1,
		IdleConnTimeout:    10 * time.Minute,
		DisableCompression: true,
		HTTP2:              &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 10 * time.Second},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			c.Dials.Add(1)
			c.Conns.Add(1)
			return &countedConn{Conn: conn, gauge: &c.Conns}, nil
		},
	}
	return c
}

// Close drops the idle peer connections.
func (c *PeerClient) Close() { c.tr.CloseIdleConnections() }

// OpenError is a CONNECT a peer refused or that failed before it was answered.
type OpenError struct {
	Status int    // what to answer the app: the peer's status, or 502 / 504
	Trail  string // the proxies that answered, callee side first
	Msg    string
	// Unsent: the peer never took the stream (its connection went away: GOAWAY, refused stream):
	// trying again cannot do anything twice.
	Unsent bool
}

func (e *OpenError) Error() string { return e.Msg }

// Timeout: the peer did not answer in time.
func (e *OpenError) Timeout() bool { return e.Status == http.StatusGatewayTimeout }

// Open opens a CONNECT stream to peer (ip:port) for authority, with via as the trail so
// far; the answer must come within timeout. The stream is a net.Conn whose Trail is the
// peer's X-Tunnel-Trail.
func (c *PeerClient) Open(peer, authority, via string, timeout time.Duration) (*ClientStream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	// The tunnel's bytes go through a pipe, written only once the peer has answered. So
	// until then the body can always be rewound: a stream the peer refused unprocessed
	// (GOAWAY from a peer handing over, a connection lost) is opened again on a new
	// connection by the transport itself, with a fresh pipe.
	body := &rewindablePipe{}
	pr, _ := body.fresh()
	req, err := http.NewRequestWithContext(ctx, http.MethodConnect, "http://"+peer, pr)
	if err != nil {
		cancel()
		return nil, &OpenError{Status: http.StatusBadGateway, Msg: err.Error()}
	}
	req.GetBody = body.fresh
	req.Host = authority
	if via != "" {
		req.Header.Set("Via", via)
	}
	var timedOut atomic.Bool
	timer := time.AfterFunc(timeout, func() { timedOut.Store(true); cancel() })
	resp, err := c.tr.RoundTrip(req)
	timer.Stop()
	pw := body.writer()
	if err != nil {
		cancel()
		pw.Close()
		if timedOut.Load() {
			return nil, &OpenError{Status: http.StatusGatewayTimeout, Msg: fmt.Sprintf("peer %s did not answer within %v", peer, timeout)}
		}
		return nil, &OpenError{Status: http.StatusBadGateway, Msg: fmt.Sprintf("peer %s: %v", peer, err), Unsent: unsent(err)}
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		cancel()
		pw.Close()
		msg := strings.TrimSpace(strings.TrimPrefix(string(body), "meshproxy: "))
		return nil, &OpenError{Status: resp.StatusCode, Trail: resp.Header.Get(TrailHeader), Msg: fmt.Sprintf("peer %s: %s", peer, msg)}
	}
	s := &ClientStream{body: resp.Body, pw: pw, cancel: cancel, Trail: resp.Header.Get(TrailHeader), peer: peer}
	return s, nil
}

// rewindablePipe is a CONNECT body that can start again: each fresh() closes the last pipe
// and makes a new one; writer() is the one in use when the peer answered.
type rewindablePipe struct {
	mu sync.Mutex
	pw *io.PipeWriter
}

func (p *rewindablePipe) fresh() (io.ReadCloser, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pw != nil {
		p.pw.Close()
	}
	pr, pw := io.Pipe()
	p.pw = pw
	return pr, nil
}

func (p *rewindablePipe) writer() *io.PipeWriter {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pw
}

// unsent: the peer's connection went away (a peer handing over on upgrade sends GOAWAY)
// before it took the stream. A refused dial is not: that peer is down, and trying again
// on other endpoints is what RETRIES asks for.
func unsent(err error) bool {
	// The standard library's HTTP/2 errors are not exported; their texts are stable.
	s := err.Error()
	return strings.Contains(s, "GOAWAY") || strings.Contains(s, "REFUSED_STREAM") || strings.Contains(s, "client connection lost")
}

// ClientStream is an open CONNECT stream on the caller's side, as a net.Conn. A read
// deadline that passes ends the stream (a timed-out upstream is closed anyway).
type ClientStream struct {
	body   io.ReadCloser
	pw     *io.PipeWriter
	cancel context.CancelFunc
	Trail  string
	peer   string
	// OnClose, if set, runs once when the stream is closed.
	OnClose func()

	mu       sync.Mutex
	timer    *time.Timer
	timedOut atomic.Bool
	closed   atomic.Bool
}

func (s *ClientStream) Read(b []byte) (int, error) {
	n, err := s.body.Read(b)
	if err != nil && err != io.EOF {
		if s.timedOut.Load() {
			return n, timeoutError{}
		}
		// A reset stream or a lost connection: for the reader, the upstream went away
		// (the proxy's stale-connection retry recognises io.ErrUnexpectedEOF).
		return n, fmt.Errorf("%w: %v", io.ErrUnexpectedEOF, err)
	}
	return n, err
}

func (s *ClientStream) Write(b []byte) (int, error) {
	n, err := s.pw.Write(b)
	if err != nil {
		return n, fmt.Errorf("%w: %v", syscall.EPIPE, err) // the peer ended the stream
	}
	return n, nil
}

// TunnelTrail is the trail the peer answered the CONNECT with.
func (s *ClientStream) TunnelTrail() string { return s.Trail }

// CloseWrite ends the stream's request side (END_STREAM): the peer reads EOF.
func (s *ClientStream) CloseWrite() error { return s.pw.Close() }

func (s *ClientStream) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.mu.Lock()
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
	s.pw.Close()
	s.cancel()
	if s.OnClose != nil {
		s.OnClose()
	}
	return s.body.Close()
}

func (s *ClientStream) LocalAddr() net.Addr  { return streamAddr("local") }
func (s *ClientStream) RemoteAddr() net.Addr { return streamAddr(s.peer) }

func (s *ClientStream) SetDeadline(t time.Time) error { return s.SetReadDeadline(t) }

// SetReadDeadline: when t passes, the stream is cancelled and a blocked Read fails with a
// timeout. The zero time disarms it.
func (s *ClientStream) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if t.IsZero() || s.closed.Load() {
		return nil
	}
	s.timer = time.AfterFunc(time.Until(t), func() { s.timedOut.Store(true); s.cancel() })
	return nil
}

func (s *ClientStream) SetWriteDeadline(time.Time) error { return nil }

type timeoutError struct{}

func (timeoutError) Error() string   { return "tunnel read timed out" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

type streamAddr string

func (a streamAddr) Network() string { return "h2-connect" }
func (a streamAddr) String() string  { return string(a) }

// ServerStream is a CONNECT stream on the answering side, as a net.Conn: reads come from
// the request body, writes go out as DATA frames at once (flushed). Close ends the handler
// that serves it, and with it the stream.
type ServerStream struct {
	r    *http.Request
	w    http.ResponseWriter
	rc   *http.ResponseController
	done chan struct{}
	once sync.Once
	mu   sync.Mutex
}

func newServerStream(w http.ResponseWriter, r *http.Request) *ServerStream {
	return &ServerStream{r: r, w: w, rc: http.NewResponseController(w), done: make(chan struct{})}
}

func (s *ServerStream) Read(b []byte) (int, error) {
	n, err := s.r.Body.Read(b)
	if err != nil && err != io.EOF {
		select {
		case <-s.done:
			return n, net.ErrClosed
		default:
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return n, err
		}
		return n, fmt.Errorf("%w: %v", io.ErrUnexpectedEOF, err)
	}
	return n, err
}

// Write sends b at once. The ResponseWriter must not be touched once its handler has
// returned (HTTP/2 panics), so every use holds mu and checks done, which Close sets under mu.
func (s *ServerStream) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClosed() {
		return 0, net.ErrClosed
	}
	n, err := s.w.Write(b)
	if err == nil {
		err = s.rc.Flush()
	}
	return n, err
}

func (s *ServerStream) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Close ends the stream: the handler returns (END_STREAM to the peer). A Write in progress
// finishes first.
func (s *ServerStream) Close() error {
	s.mu.Lock()
	s.once.Do(func() { close(s.done) })
	s.mu.Unlock()
	return nil
}

// Done is closed once the stream was closed.
func (s *ServerStream) Done() <-chan struct{} { return s.done }

func (s *ServerStream) LocalAddr() net.Addr  { return streamAddr("local") }
func (s *ServerStream) RemoteAddr() net.Addr { return streamAddr(s.r.RemoteAddr) }

func (s *ServerStream) SetDeadline(t time.Time) error {
	s.SetWriteDeadline(t)
	return s.SetReadDeadline(t)
}

func (s *ServerStream) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClosed() {
		return net.ErrClosed
	}
	return s.rc.SetReadDeadline(t)
}

func (s *ServerStream) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClosed() {
		return net.ErrClosed
	}
	return s.rc.SetWriteDeadline(t)
}

// answerConnect writes a CONNECT stream's answer: status, the trail, and for errors a
// one-line body.
func answerConnect(w http.ResponseWriter, status int, trail, msg string) {
	if trail != "" {
		w.Header().Set(TrailHeader, trail)
	}
	if status == http.StatusOK {
		w.WriteHeader(status)
		http.NewResponseController(w).Flush()
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, "meshproxy: "+msg+"\n")
}

// NewPeerServer is the HTTP/2-only server peers open streams on.
func NewPeerServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		Protocols:         h2Only(),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       15 * time.Minute,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: 4096},
		ErrorLog:          nil,
	}
}
