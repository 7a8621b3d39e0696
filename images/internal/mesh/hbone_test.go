package mesh

import (
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// goawayFirst hands its first connection to a peer that takes the client's first stream
// and answers GOAWAY without processing it (what an L4 proxy handing over on upgrade may
// do to a stream in flight), and every later one to the real server.
type goawayFirst struct {
	net.Listener
	first atomic.Bool
	t     *testing.T
}

func (l *goawayFirst) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || l.first.Swap(true) {
			return c, err
		}
		go l.refuse(c)
	}
}

// refuse speaks just enough HTTP/2: the preface, empty SETTINGS, and on the first HEADERS
// a GOAWAY whose last stream is 0 (nothing processed), then closes.
func (l *goawayFirst) refuse(c net.Conn) {
	defer c.Close()
	preface := make([]byte, 24)
	if _, err := io.ReadFull(c, preface); err != nil {
		return
	}
	frame := func(typ, flags byte, stream uint32, payload []byte) {
		h := make([]byte, 9)
		h[0], h[1], h[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
		h[3], h[4] = typ, flags
		binary.BigEndian.PutUint32(h[5:], stream)
		c.Write(append(h, payload...))
	}
	frame(0x4, 0, 0, nil) // SETTINGS
	for {
		h := make([]byte, 9)
		if _, err := io.ReadFull(c, h); err != nil {
			return
		}
		n := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		if _, err := io.CopyN(io.Discard, c, int64(n)); err != nil {
			return
		}
		switch h[3] {
		case 0x4: // SETTINGS: acknowledge the client's
			if h[4]&1 == 0 {
				frame(0x4, 1, 0, nil)
			}
		case 0x1: // HEADERS: go away, nothing processed
			frame(0x7, 0, 0, make([]byte, 8))
			time.Sleep(50 * time.Millisecond)
			return
		}
	}
}

// A CONNECT stream the peer refused unprocessed (GOAWAY) is opened again on a new
// connection by the transport itself: nothing of the tunnel had been written, so its body
// can be rewound. Before, the transport gave up ("cannot rewind body after connection
// loss") and the app's call failed with a 502 during an L4 proxy's upgrade.
func TestOpenSurvivesAPeerGoingAwayBeforeTakingTheStream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Protocols: h2Only(), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		buf := make([]byte, 512)
		for { // echo the tunnel, flushing each piece
			n, err := r.Body.Read(buf)
			if n > 0 {
				w.Write(buf[:n])
				w.(http.Flusher).Flush()
			}
			if err != nil {
				return
			}
		}
	})}
	go srv.Serve(&goawayFirst{Listener: ln, t: t})
	t.Cleanup(func() { srv.Close() })

	c := NewPeerClient()
	defer c.Close()
	s, err := c.Open(ln.Addr().String(), "10.0.0.9:8080", "", 5*time.Second)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	if d := c.Dials.Load(); d != 2 {
		t.Errorf("dials %d, want 2 (the refused connection and the one that took the stream)", d)
	}
	if _, err := s.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(s, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo %q %v", got, err)
	}
}
