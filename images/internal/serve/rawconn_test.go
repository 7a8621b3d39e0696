package serve

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// rawPair: a RawConn and the plain connection at its other end.
func rawPair(t *testing.T) (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	raw := Raw(c)
	if _, ok := raw.(*RawConn); !ok {
		t.Fatal("a TCP connection was not wrapped")
	}
	t.Cleanup(func() { raw.Close(); peer.Close() })
	return raw, peer
}

func TestRawConnCarriesBytesBothWaysAndEOF(t *testing.T) {
	raw, peer := rawPair(t)
	big := make([]byte, 4<<20) // larger than the socket buffers: the write must wait and resume
	for i := range big {
		big[i] = byte(i)
	}
	go func() { raw.Write(big) }()
	got := make([]byte, len(big))
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != byte(i) {
			t.Fatalf("byte %d differs", i)
		}
	}
	go func() { peer.Write([]byte("pong")); peer.Close() }()
	buf, err := io.ReadAll(raw)
	if err != nil || string(buf) != "pong" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

func TestRawConnDeadlinesFireAndDoNotLinger(t *testing.T) {
	raw, peer := rawPair(t)
	raw.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	start := time.Now()
	_, err := raw.Read(make([]byte, 10))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with nothing to read: %v, want a deadline error", err)
	}
	if waited := time.Since(start); waited > 20*time.Millisecond+deadlineSlack+200*time.Millisecond {
		t.Fatalf("the deadline fired after %v", waited)
	}
	// A later deadline replaces the one that fired: the next read must not fail at once.
	raw.SetReadDeadline(time.Now().Add(2 * time.Second))
	go func() { time.Sleep(50 * time.Millisecond); peer.Write([]byte("x")) }()
	if n, err := raw.Read(make([]byte, 10)); n != 1 || err != nil {
		t.Fatalf("read after a new deadline: %d, %v", n, err)
	}
	// No deadline at all: a read waits for data however long it takes.
	raw.SetReadDeadline(time.Time{})
	go func() { time.Sleep(deadlineSlack + 100*time.Millisecond); peer.Write([]byte("y")) }()
	if n, err := raw.Read(make([]byte, 10)); n != 1 || err != nil {
		t.Fatalf("read without a deadline: %d, %v", n, err)
	}
}

func TestRawConnOnCloseRunsOnce(t *testing.T) {
	raw, _ := rawPair(t)
	n := 0
	raw.(*RawConn).OnClose = func() { n++ }
	raw.Close()
	raw.Close()
	if n != 1 {
		t.Fatalf("OnClose ran %d times", n)
	}
}
