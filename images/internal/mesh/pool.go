package mesh

import (
	"bufio"
	"io"
	"net"
	"sync"
	"time"
)

// Buffers are lent per exchange, not owned per connection: an idle connection (client
// waiting between requests aside) holds none, so memory follows the requests in progress
// rather than the connections open.
var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, maxHead) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBuffer) }}
)

func getReader(r io.Reader) *bufio.Reader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readers.Put(br)
}

func getWriter(w io.Writer) *bufio.Writer {
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	writers.Put(bw)
}

// upstreamConn is one keep-alive connection to an upstream, with a read buffer while an
// answer is read (the request is written through a buffer lent for the write alone).
type upstreamConn struct {
	conn      net.Conn
	br        *bufio.Reader
	reused    bool // it served a request before this one
	idleSince time.Time
	trail     string // a tunnel's: the proxies it passes (TrailHeader)
}

// ready takes the read buffer for the answer; with lend, only once the answer has begun
// to arrive (waiting holds no buffer).
func (u *upstreamConn) ready(lend bool) error {
	if u.br != nil {
		return nil
	}
	if w, ok := u.conn.(interface{ WaitReadable() error }); ok && lend {
		if err := w.WaitReadable(); err != nil {
			return err
		}
	}
	u.br = getReader(u.conn)
	return nil
}

func (u *upstreamConn) detach() {
	if u.br != nil {
		putReader(u.br)
		u.br = nil
	}
}

func (u *upstreamConn) close() {
	u.detach()
	u.conn.Close()
}

// pool keeps idle connections to one upstream address, most recently used first (a hot
// connection stays hot; the cold ones age out).
type pool struct {
	addr string
	dial func(addr string) (net.Conn, error)

	mu   sync.Mutex
	idle []*upstreamConn
}

// get returns an idle connection, or dials a new one.
func (p *pool) get() (*upstreamConn, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		u := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		u.reused = true
		return u, nil
	}
	p.mu.Unlock()
	return p.fresh()
}

// fresh dials a new connection. The dial runs on a goroutine of its own: net.Dial's call
// path is deep, and the stack it grows would otherwise stay with the client connection's
// goroutine (memory per open connection).
func (p *pool) fresh() (*upstreamConn, error) {
	type dialed struct {
		c   net.Conn
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		c, err := p.dial(p.addr)
		done <- dialed{c, err}
	}()
	d := <-done
	c, err := d.c, d.err
	if err != nil {
		return nil, err
	}
	u := &upstreamConn{conn: c}
	if t, ok := c.(interface{ TunnelTrail() string }); ok {
		u.trail = t.TunnelTrail()
	}
	return u, nil
}

// put returns a connection whose exchange completed cleanly.
func (p *pool) put(u *upstreamConn) {
	if u.br != nil && u.br.Buffered() > 0 { // bytes nobody asked for: the connection is out of step
		u.close()
		return
	}
	u.detach()
	u.idleSince = time.Now()
	p.mu.Lock()
	p.idle = append(p.idle, u)
	p.mu.Unlock()
}

// closeIdle closes the connections idle for longer than maxIdle (all of them for 0).
func (p *pool) closeIdle(maxIdle time.Duration) {
	cutoff := time.Now().Add(-maxIdle)
	p.mu.Lock()
	keep := p.idle[:0]
	var old []*upstreamConn
	for _, u := range p.idle {
		if maxIdle == 0 || u.idleSince.Before(cutoff) {
			old = append(old, u)
		} else {
			keep = append(keep, u)
		}
	}
	for i := len(keep); i < len(p.idle); i++ {
		p.idle[i] = nil
	}
	p.idle = keep
	p.mu.Unlock()
	for _, u := range old {
		u.close()
	}
}
