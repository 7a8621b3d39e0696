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

// upstreamConn is one keep-alive connection to an upstream, with buffers while in use.
type upstreamConn struct {
	conn      net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	reused    bool // it served a request before this one
	idleSince time.Time
}

func (u *upstreamConn) attach() {
	u.br, u.bw = getReader(u.conn), getWriter(u.conn)
}

func (u *upstreamConn) detach() {
	if u.br != nil {
		putReader(u.br)
		putWriter(u.bw)
		u.br, u.bw = nil, nil
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
		u.attach()
		return u, nil
	}
	p.mu.Unlock()
	return p.fresh()
}

// fresh dials a new connection.
func (p *pool) fresh() (*upstreamConn, error) {
	c, err := p.dial(p.addr)
	if err != nil {
		return nil, err
	}
	u := &upstreamConn{conn: c}
	u.attach()
	return u, nil
}

// put returns a connection whose exchange completed cleanly.
func (p *pool) put(u *upstreamConn) {
	if u.br.Buffered() > 0 { // bytes nobody asked for: the connection is out of step
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
