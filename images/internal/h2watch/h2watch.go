// Package h2watch watches the client side of HTTP/2 connections: how each one ended (the
// server's GOAWAY and then an end, or a cut with none), the streams the server reset, and how
// long a channel went without a connection. gRPC clients hide all of it (they reconnect and
// retry by themselves), and it is what an agent upgrade does to long-lived traffic (issue 24).
//
// A Conn reads the server's frames as they pass: only the 9-byte frame headers and a GOAWAY's
// first 8 payload bytes, so it costs nothing on the data it carries.
package h2watch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Frame types read here (RFC 9113 section 6).
const (
	frameRSTStream = 0x3
	frameGoAway    = 0x7
)

// How a connection ended.
const (
	EndOpen    = ""        // still open
	EndClosed  = "closed"  // the client closed it
	EndStopped = "stopped" // closed at the end of the run (Watcher.Close): not a replacement
	EndEOF     = "eof"     // the server closed it (FIN)
	EndReset   = "rst"     // the server reset it (RST)
	EndTimeout = "timeout" // a deadline passed
	EndError   = "error"   // any other read error
)

var (
	monoAt   time.Time
	monoBase float64
)

func init() {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err == nil {
		monoBase = float64(ts.Sec) + float64(ts.Nsec)/1e9
	}
	monoAt = time.Now()
}

// Now is CLOCK_MONOTONIC in seconds: the clock of the harness's other records
// (Python's time.monotonic()), so the connections land on the case's timeline.
func Now() float64 { return monoBase + time.Since(monoAt).Seconds() }

// Record is one connection's life, written when it ends.
type Record struct {
	Channel          string  `json:"channel"`
	ID               string  `json:"id"`
	OpenedT          float64 `json:"opened_t"`
	ReadyT           float64 `json:"ready_t,omitempty"` // the server's first frame
	GoAwayT          float64 `json:"goaway_t,omitempty"`
	GoAwayCode       uint32  `json:"goaway_code,omitempty"`
	GoAwayLastStream uint32  `json:"goaway_last_stream,omitempty"`
	EndedT           float64 `json:"ended_t,omitempty"`
	End              string  `json:"end"`
	RSTStreams       int     `json:"rst_streams"`
}

// Ended is what a channel's later call says of a connection of the channel that ended:
// how, whether a GOAWAY came first, and how long the channel went without a connection that
// had heard from its server: 0 when a GOAWAY let it open the next one before this one
// ended, else from this one's end to the next one's first frame.
type Ended struct {
	ID         string   `json:"id"`
	End        string   `json:"end"`
	GoAway     bool     `json:"goaway"`
	ReconnectS *float64 `json:"reconnect_s,omitempty"`
	lostAt     float64
}

// Addr is a watched connection's remote address, carrying its id (gRPC's peer.Addr is the
// connection's RemoteAddr, so a call can say which connection carried it).
type Addr struct {
	net.Addr
	ID string
}

// Conn is a watched client connection.
type Conn struct {
	net.Conn
	w *Watcher

	mu     sync.Mutex
	rec    Record
	hdr    [9]byte
	hdrN   int
	skip   int    // payload bytes of the current frame still to pass
	goaway []byte // a GOAWAY's first 8 payload bytes, while they arrive
	ended  bool
}

// Watcher dials watched connections and keeps, per channel, the last one that ended.
type Watcher struct {
	Prefix string       // connection ids are Prefix#n
	OnEnd  func(Record) // called once per connection, when it ends
	// OnGoAway is called once per connection, when its server first says GOAWAY.
	OnGoAway func(Record)
	Dialer   net.Dialer
	next     atomic.Uint64
	mu       sync.Mutex
	pending  map[string][]Ended // per channel: connections that ended, not yet reported
	live     map[*Conn]struct{}
}

// Dial opens a connection for `channel` (grpc.WithContextDialer's shape, with the channel bound).
func (w *Watcher) Dial(channel string, dial func(ctx context.Context, addr string) (net.Conn, error)) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if dial == nil {
			dial = func(ctx context.Context, addr string) (net.Conn, error) {
				return w.Dialer.DialContext(ctx, "tcp", addr)
			}
		}
		raw, err := dial(ctx, addr)
		if err != nil {
			return nil, err
		}
		c := &Conn{Conn: raw, w: w, rec: Record{Channel: channel, ID: fmt.Sprintf("%s#%d", w.Prefix, w.next.Add(1)), OpenedT: Now()}}
		w.mu.Lock()
		if w.live == nil {
			w.live = map[*Conn]struct{}{}
		}
		w.live[c] = struct{}{}
		w.mu.Unlock()
		return c, nil
	}
}

// Ended hands over the channel's connections that ended since the last call (each said
// once), with the time the channel took to have a live connection again.
func (w *Watcher) Ended(channel string) []Ended {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.pending[channel]
	delete(w.pending, channel)
	for i := range out {
		for c := range w.live {
			r := c.Snapshot()
			if r.Channel != channel || r.ReadyT == 0 {
				continue
			}
			d := max(0, r.ReadyT-out[i].lostAt)
			if out[i].ReconnectS == nil || d < *out[i].ReconnectS {
				out[i].ReconnectS = &d
			}
		}
	}
	return out
}

// Close ends every connection still open, as stopped (the end of a run).
func (w *Watcher) Close() {
	w.mu.Lock()
	live := make([]*Conn, 0, len(w.live))
	for c := range w.live {
		live = append(live, c)
	}
	w.mu.Unlock()
	for _, c := range live {
		c.finish(EndStopped)
		_ = c.Conn.Close()
	}
}

// RemoteAddr carries the connection's id.
func (c *Conn) RemoteAddr() net.Addr { return Addr{Addr: c.Conn.RemoteAddr(), ID: c.rec.ID} }

func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		had := c.rec.GoAwayT != 0
		c.parse(p[:n])
		goaway := !had && c.rec.GoAwayT != 0
		rec := c.rec
		c.mu.Unlock()
		if goaway && c.w.OnGoAway != nil {
			c.w.OnGoAway(rec)
		}
	}
	if err != nil {
		c.finish(classify(err))
	}
	return n, err
}

func (c *Conn) Close() error {
	c.finish(EndClosed)
	return c.Conn.Close()
}

// parse follows the frame headers in the server's bytes (c.mu held).
func (c *Conn) parse(b []byte) {
	for len(b) > 0 {
		if c.skip > 0 {
			k := min(c.skip, len(b))
			if c.goaway != nil && len(c.goaway) < 8 {
				take := min(8-len(c.goaway), k)
				c.goaway = append(c.goaway, b[:take]...)
				if len(c.goaway) == 8 {
					c.rec.GoAwayLastStream = binary.BigEndian.Uint32(c.goaway[0:4]) & 0x7fffffff
					c.rec.GoAwayCode = binary.BigEndian.Uint32(c.goaway[4:8])
				}
			}
			c.skip -= k
			b = b[k:]
			continue
		}
		k := copy(c.hdr[c.hdrN:], b)
		c.hdrN += k
		b = b[k:]
		if c.hdrN < 9 {
			return
		}
		c.hdrN = 0
		if c.rec.ReadyT == 0 {
			c.rec.ReadyT = Now()
		}
		c.skip = int(c.hdr[0])<<16 | int(c.hdr[1])<<8 | int(c.hdr[2])
		c.goaway = nil
		switch c.hdr[3] {
		case frameGoAway:
			if c.rec.GoAwayT == 0 {
				c.rec.GoAwayT = Now()
			}
			c.goaway = make([]byte, 0, 8)
		case frameRSTStream:
			c.rec.RSTStreams++
		}
	}
}

func (c *Conn) finish(end string) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	c.rec.End = end
	c.rec.EndedT = Now()
	rec := c.rec
	c.mu.Unlock()
	w := c.w
	w.mu.Lock()
	delete(w.live, c)
	if end != EndStopped {
		if w.pending == nil {
			w.pending = map[string][]Ended{}
		}
		w.pending[rec.Channel] = append(w.pending[rec.Channel], Ended{ID: rec.ID, End: end, GoAway: rec.GoAwayT != 0, lostAt: rec.EndedT})
	}
	w.mu.Unlock()
	if w.OnEnd != nil {
		w.OnEnd(rec)
	}
}

// Snapshot is a connection's record so far (for a call that wants its replacement's details).
func (c *Conn) Snapshot() Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec
}

func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF):
		return EndEOF
	case errors.Is(err, syscall.ECONNRESET):
		return EndReset
	case errors.Is(err, net.ErrClosed):
		return EndClosed
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return EndTimeout
	}
	return EndError
}
