package serve

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// RawConn is a TCP connection whose reads and writes are raw syscalls on its non-blocking
// socket, made through the runtime's poller (so deadlines, closing and waiting for
// readiness work as for any net.Conn).
//
// Why: a proxy's write on a loopback socket runs the receiver's side of TCP and wakes the
// receiver, and when both share a core the writer is often switched out inside the
// syscall. The Go runtime then sees its only P "in a syscall" for more than 20 µs, hands
// the P to another thread and keeps its monitor thread polling every 20 µs: measured
// (strace -c), 1.6 futex calls and 2.9 nanosleeps per proxied request on top of the I/O.
// A raw syscall on a non-blocking socket never blocks, so nothing needs handing off.
//
// Deadlines are set by the goroutine that reads or writes, as fasthttp does; to interrupt
// a blocked Read from elsewhere, Close the connection.
type RawConn struct {
	net.Conn
	rc syscall.RawConn
	// OnClose, if set, runs once when the connection is closed.
	OnClose func()
	closed  sync.Once

	// The poller calls these with the socket; bound once, so a read or write allocates nothing.
	// Reads and writes keep separate state: one goroutine may read while another writes.
	readFn, writeFn func(fd uintptr) bool
	rbuf, wbuf      []byte
	rn, wn          int
	rerrno, werrno  syscall.Errno

	rd, wd lazyDeadline
}

// deadlineSlack is how late a deadline may fire. fasthttp sets two or three deadlines
// per request (idle, read, write; client and server side), each a runtime timer update;
// a deadline only matters when the connection waits, so one is applied only then, and
// only if it moved by more than the slack since the last one applied: about one timer
// update per connection per slack instead of several per request.
const deadlineSlack = 250 * time.Millisecond

// lazyDeadline is the deadline asked for and the one the poller has.
type lazyDeadline struct {
	want, applied time.Time
}

// covered: the applied deadline fires at or at most deadlineSlack after the one wanted.
func (d *lazyDeadline) covered() bool {
	if d.want.IsZero() || d.applied.IsZero() {
		return d.want.IsZero() && d.applied.IsZero()
	}
	return !d.applied.Before(d.want) && d.applied.Sub(d.want) <= deadlineSlack
}

// apply gives the poller the wanted deadline, rounded up by the slack.
func (d *lazyDeadline) apply(set func(time.Time) error) {
	d.applied = d.want
	if !d.want.IsZero() {
		d.applied = d.want.Add(deadlineSlack)
	}
	_ = set(d.applied)
}

// stale: the applied deadline is earlier than the one wanted and may already have passed,
// which would fail the next read or write before it starts.
func (d *lazyDeadline) stale() bool {
	return !d.applied.IsZero() && (d.want.IsZero() || d.want.After(d.applied)) && !time.Now().Before(d.applied)
}

func (c *RawConn) SetDeadline(t time.Time) error {
	c.rd.want, c.wd.want = t, t
	return nil
}

func (c *RawConn) SetReadDeadline(t time.Time) error {
	c.rd.want = t
	return nil
}

func (c *RawConn) SetWriteDeadline(t time.Time) error {
	c.wd.want = t
	return nil
}

// Raw wraps a *net.TCPConn; any other connection is returned as it is.
func Raw(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	r := &RawConn{Conn: c, rc: rc}
	r.readFn, r.writeFn = r.read, r.write
	return r
}

func (c *RawConn) read(fd uintptr) bool {
	for {
		// recvfrom, not read: a socket read through the VFS layer pays for file-position
		// locking it does not need.
		r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)), 0, 0, 0)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if !c.rd.covered() {
				c.rd.apply(c.Conn.SetReadDeadline)
			}
			return false // wait in the poller until readable
		}
		c.rn, c.rerrno = int(r), e
		return true
	}
}

func (c *RawConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if c.rd.stale() {
		c.rd.apply(c.Conn.SetReadDeadline)
	}
	c.rbuf, c.rn, c.rerrno = b, 0, 0
	err := c.rc.Read(c.readFn)
	c.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case c.rerrno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", c.rerrno)}
	case c.rn == 0:
		return 0, io.EOF
	}
	return c.rn, nil
}

// WaitReadable blocks until the connection has bytes to read or was closed by the peer,
// without reading any (a one-byte MSG_PEEK), so a caller can wait without holding a buffer.
func (c *RawConn) WaitReadable() error {
	if c.rd.stale() {
		c.rd.apply(c.Conn.SetReadDeadline)
	}
	var b [1]byte
	return c.rc.Read(func(fd uintptr) bool {
		for {
			_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1, syscall.MSG_PEEK, 0, 0)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				if !c.rd.covered() {
					c.rd.apply(c.Conn.SetReadDeadline)
				}
				return false
			}
			return true // data, end of stream or an error: the next Read tells which
		}
	})
}

func (c *RawConn) write(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		// send with MSG_NOSIGNAL: a closed peer is EPIPE, not a SIGPIPE.
		r, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&c.wbuf[c.wn])), uintptr(len(c.wbuf)-c.wn),
			syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			c.wn += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			if !c.wd.covered() {
				c.wd.apply(c.Conn.SetWriteDeadline)
			}
			return false // wait in the poller until writable
		default:
			c.werrno = e
			return true
		}
	}
	return true
}

func (c *RawConn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if c.wd.stale() {
		c.wd.apply(c.Conn.SetWriteDeadline)
	}
	c.wbuf, c.wn, c.werrno = b, 0, 0
	err := c.rc.Write(c.writeFn)
	c.wbuf = nil
	if err == nil && c.werrno != 0 {
		err = &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("write", c.werrno)}
	}
	return c.wn, err
}

func (c *RawConn) Close() error {
	if c.OnClose != nil {
		c.closed.Do(c.OnClose)
	}
	return c.Conn.Close()
}

// rawListener hands out RawConns.
type rawListener struct{ net.Listener }

func (l rawListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Raw(c), nil
}
