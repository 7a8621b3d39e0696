package mesh

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"patternbench.local/images/internal/serve"
)

// Handler answers one exchange: it writes the whole response to x.out().
type Handler func(x *exchange)

// exchange is one request on a client connection and what the handler needs to answer it.
type exchange struct {
	req    head
	resp   head // the upstream's answer, parsed
	method []byte
	target []byte
	// close: the client connection ends after this exchange (the client asked, the server
	// drains, or the answer can only end by closing).
	close  bool
	status int // what was answered, for metrics

	methodBuf [16]byte // the method outlives the head (read buffer) once a body is read

	conn     net.Conn
	br       *bufio.Reader // the client's side
	w        *bufio.Writer // taken when the first byte of the answer is written: see out
	headDone bool          // the request head was discarded from br (its slices are gone)
	// lend: connections are many; buffers are taken only for as long as they are used.
	lend bool
}

// out is the client's write buffer, taken on first use: an exchange waiting for its
// upstream holds none.
func (x *exchange) out() *bufio.Writer {
	if x.w == nil {
		x.w = getWriter(x.conn)
	}
	return x.w
}

func (x *exchange) flush() error {
	if x.w == nil {
		return nil
	}
	return x.w.Flush()
}

// consumeHead discards the request head from the read buffer, before its body is read.
func (x *exchange) consumeHead() {
	if !x.headDone {
		x.br.Discard(x.req.size)
		x.headDone = true
	}
}

// replayable: idempotent and without a body, so sending it twice is harmless.
func (x *exchange) replayable() bool {
	m := x.method
	get := bytes.Equal(m, []byte("GET")) || bytes.Equal(m, []byte("HEAD")) || bytes.Equal(m, []byte("OPTIONS"))
	return get && !x.req.chunked && x.req.contentLength <= 0
}

// Server serves a Handler on HTTP/1.1 keep-alive connections, one goroutine each; it is a
// serve.Server, so it drains like the others.
type Server struct {
	handler     Handler
	IdleTimeout time.Duration

	keepAlive atomic.Bool
	closing   atomic.Bool
	open      atomic.Int64 // client connections
	mu        sync.Mutex
	listeners []net.Listener
	conns     map[*clientConn]struct{}
	done      sync.WaitGroup
	h2        *h2Side // HTTP/2 cleartext connections go here (EnableH2; h2.go)
}

// clientConn is an open client connection and whether it waits for a request (so
// Shutdown may close it).
type clientConn struct {
	net.Conn
	idle atomic.Bool
}

// lendReadersAbove: with more open client connections than this, a connection waiting for
// its next request gives its read and write buffers back.
const lendReadersAbove = 64

// NewServer returns a server for h; connections idle for 60 s are closed.
func NewServer(h Handler) *Server {
	s := &Server{handler: h, IdleTimeout: 60 * time.Second, conns: map[*clientConn]struct{}{}}
	s.keepAlive.Store(true)
	return s
}

// Serve accepts connections until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
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
		cc := &clientConn{Conn: serve.Raw(c)}
		cc.idle.Store(true)
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[cc] = struct{}{}
		s.open.Add(1)
		s.done.Add(1)
		s.mu.Unlock()
		go s.serveConn(cc)
	}
}

// setIdle marks a connection as waiting for a request (Shutdown may close it) or busy; it
// reports false once the server is closing and the connection should end.
func (s *Server) setIdle(c *clientConn, idle bool) bool {
	c.idle.Store(idle)
	return !s.closing.Load()
}

func (s *Server) serveConn(c *clientConn) {
	var x *exchange
	first, handed := true, false // handed: the connection went to the HTTP/2 server
	defer func() {
		if x != nil && x.w != nil {
			putWriter(x.w)
		}
		if x != nil && x.br != nil {
			putReader(x.br)
		}
		if !handed {
			c.Close()
		}
		s.open.Add(-1)
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.done.Done()
	}()
	x = &exchange{conn: c, br: getReader(c)}
	waiter, _ := c.Conn.(interface{ WaitReadable() error })
	for {
		if x.w != nil && s.open.Load() > lendReadersAbove {
			putWriter(x.w)
			x.w = nil
		}
		if !s.setIdle(c, true) {
			return
		}
		c.SetReadDeadline(time.Now().Add(s.IdleTimeout))
		if waiter != nil && x.br.Buffered() == 0 && s.open.Load() > lendReadersAbove {
			// Many connections: wait for the next request without a buffer (one more
			// syscall per request), so memory follows requests in progress.
			putReader(x.br)
			x.br = nil
			waiter.WaitReadable()
			x.br = getReader(c)
		}
		err := readHead(x.br, &x.req)
		if !s.setIdle(c, false) && err != nil {
			return
		}
		x.lend = waiter != nil && s.open.Load() > lendReadersAbove
		if err != nil {
			if errors.Is(err, errHeadTooLarge) {
				writeError(x, http.StatusRequestHeaderFieldsTooLarge, err.Error(), nil)
			} else if errors.Is(err, errMalformed) {
				writeError(x, http.StatusBadRequest, err.Error(), nil)
			}
			x.flush()
			return
		}
		if first && isH2Preface(x.req.line) && s.takeH2(c.Conn, x.br) {
			handed = true
			return
		}
		first = false
		if !x.parseRequestLine() {
			writeError(x, http.StatusBadRequest, "malformed request line", nil)
			x.flush()
			return
		}
		x.close = x.req.close || !s.keepAlive.Load() || s.closing.Load()
		if x.req.expect100 {
			x.out().WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			x.flush()
		}
		x.status, x.headDone = 0, false
		s.handler(x)
		x.consumeHead()
		if x.flush() != nil || x.close {
			return
		}
	}
}

// parseRequestLine splits "METHOD target HTTP/1.x".
func (x *exchange) parseRequestLine() bool {
	line := x.req.line
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1+1 {
		return false
	}
	x.method, x.target = append(x.methodBuf[:0], line[:sp1]...), line[sp1+1:sp2]
	switch string(line[sp2+1:]) {
	case "HTTP/1.1":
		x.req.finish(false)
	case "HTTP/1.0":
		x.req.finish(true)
	default:
		return false
	}
	return true
}

// SetKeepAlivesEnabled(false): every answer from now on closes its connection; every
// HTTP/2 connection gets GOAWAY now (its open streams go on), and one that comes later
// once its streams are done.
func (s *Server) SetKeepAlivesEnabled(on bool) {
	was := s.keepAlive.Swap(on)
	if s.h2 != nil && was && !on {
		s.h2.retire(false)
	}
}

// Shutdown stops accepting, closes idle connections at once and waits for the busy ones
// to finish their exchange, until ctx ends. HTTP/2 connections get GOAWAY at once and
// their open streams are waited for alongside.
func (s *Server) Shutdown(ctx context.Context) error {
	h2done := make(chan error, 1)
	if s.h2 != nil {
		go func() { h2done <- s.h2.shutdown(ctx) }()
	} else {
		h2done <- nil
	}
	err := s.shutdownH1(ctx)
	if err2 := <-h2done; err == nil {
		err = err2
	}
	return err
}

func (s *Server) shutdownH1(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	for _, ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		if c.idle.Load() {
			c.Close()
		}
	}
	s.mu.Unlock()
	finished := make(chan struct{})
	go func() { s.done.Wait(); close(finished) }()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writeError answers with a one-line error of the proxy's own (Via on it if via is set).
func writeError(x *exchange, status int, msg string, via []byte) {
	x.status = status
	body := len("meshproxy: ") + len(msg) + 1
	w := x.out()
	w.WriteString("HTTP/1.1 ")
	w.WriteString(itoa3(status))
	w.WriteString(" ")
	w.WriteString(http.StatusText(status))
	w.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ")
	w.WriteString(itoa(body))
	w.WriteString("\r\n")
	if via != nil {
		writeVia(w, nil, via)
	}
	if x.close || x.req.contentLength > 0 || x.req.chunked { // an unread body: the connection cannot go on
		x.close = true
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\nmeshproxy: ")
	w.WriteString(msg)
	w.WriteString("\n")
}

func itoa3(n int) string { return string([]byte{byte('0' + n/100%10), byte('0' + n/10%10), byte('0' + n%10)}) }

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
