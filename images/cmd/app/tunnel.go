package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// trailHeader is where the ambient proxies list the hops of a tunnel (meshproxy's
// mesh.TrailHeader): on the node L4 proxy's CONNECT answer, and on a waypoint's answers.
const trailHeader = "X-Tunnel-Trail"

// tunnelDialer reaches a downstream through the node L4 proxy (MESH_TUNNEL=connect): every
// connection is a CONNECT tunnel to "<service>.<namespace>:80" and the app speaks plain
// HTTP inside it. The proxy reads only the CONNECT line; its answer lists the proxies the
// tunnel passes.
type tunnelDialer struct {
	proxy string
	d     net.Dialer
}

// tunnelConn is an open tunnel and the trail its CONNECT was answered with.
type tunnelConn struct {
	net.Conn
	br    *bufio.Reader // holds bytes that came after the answer, if any
	trail string
}

// tunnelAddr is a tunnel's remote address with its trail: gRPC hands a call its
// connection's RemoteAddr (peer.Addr), so a call over a tunnel can name the proxies it passed.
type tunnelAddr struct {
	net.Addr
	trail string
}

func (c *tunnelConn) RemoteAddr() net.Addr {
	return tunnelAddr{Addr: c.Conn.RemoteAddr(), trail: c.trail}
}

func (c *tunnelConn) Read(b []byte) (int, error) {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(b)
		}
		c.br = nil
	}
	return c.Conn.Read(b)
}

// tunnelError is a CONNECT the proxy refused: its status and trail go into the call's record.
type tunnelError struct {
	status int
	trail  string
	msg    string
}

func (e *tunnelError) Error() string { return e.msg }

func (t *tunnelDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := t.d.DialContext(ctx, "tcp", t.proxy)
	if err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) }) // cancelled: unblock
	defer stop()
	if _, err := fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", addr, addr); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 1024)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("tunnel to %s through %s: %w", addr, t.proxy, err)
	}
	trail := resp.Header.Get(trailHeader)
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		conn.Close()
		return nil, &tunnelError{status: resp.StatusCode, trail: trail,
			msg: fmt.Sprintf("tunnel to %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(body)))}
	}
	conn.SetDeadline(time.Time{})
	tc := &tunnelConn{Conn: conn, trail: trail}
	if br.Buffered() > 0 {
		tc.br = br
	}
	return tc, nil
}
