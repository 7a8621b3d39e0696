package mesh

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// upstreamConn is one keep-alive connection to an upstream, with its buffers.
type upstreamConn struct {
	conn      net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	reused    bool // it served a request before this one
	idleSince time.Time
}

func (u *upstreamConn) close() { u.conn.Close() }

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

// fresh dials a new connection.
func (p *pool) fresh() (*upstreamConn, error) {
	c, err := p.dial(p.addr)
	if err != nil {
		return nil, err
	}
	return &upstreamConn{conn: c, br: bufio.NewReaderSize(c, maxHead), bw: bufio.NewWriterSize(c, writeBuffer)}, nil
}

// put returns a connection whose exchange completed cleanly.
func (p *pool) put(u *upstreamConn) {
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
